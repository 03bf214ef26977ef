/**
 * TCP segment view over an IPv4 packet (RFC 9293 3.1), its options
 * (RFC 9293 3.2, RFC 7323, RFC 2018), and in-place setters that keep the
 * checksum right incrementally (RFC 1624). Pure: no I/O.
 *
 * The parser checks every length before it reads and returns an error value;
 * it never throws on the per-packet path. Setters mutate the packet's buffer
 * and its view together.
 */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { csumReplace, csumUpdate16, csumUpdate32, fold, onesSum, pseudoHeaderSum, tcpChecksum } from './checksum.js';
import { IP_PROTO_TCP, parseIpv4 } from './ipv4.js';
import type { Ipv4Header, Ipv4MalformedReason } from './ipv4.js';
import { MalformedPacketError } from '../errors.js';
import { seq } from './seq.js';
import type { SeqNum } from './seq.js';

/** Byte offsets of TCP header fields, relative to the TCP header, and size limits. */
export const TCP = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFFSET: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
  /** Data offset 5: a header without options. */
  MIN_HEADER_LENGTH: 20,
  /** Data offset 15: 40 bytes of options at most. */
  MAX_HEADER_LENGTH: 60,
} as const;

/** TCP header flag bits (the byte at {@link TCP}.FLAGS). */
export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** TCP option kinds the wrap understands; others are kept as they are. */
export const TcpOptionKind = {
  EOL: 0,
  NOP: 1,
  MSS: 2,
  WINDOW_SCALE: 3,
  SACK_PERMITTED: 4,
  SACK: 5,
  TIMESTAMPS: 8,
} as const;

/** Largest window shift RFC 7323 2.3 allows; larger offers are read as 14. */
export const MAX_WINDOW_SCALE = 14;

/** Why a packet was rejected: an IPv4 reason or one of the TCP ones. */
export type MalformedReason =
  | Ipv4MalformedReason
  | 'not-tcp'
  | 'truncated-tcp-header'
  | 'bad-data-offset'
  | 'bad-option-length'
  | 'bad-option-size';

/** One SACK block (RFC 2018 3): the range [left, right) the receiver holds. */
export interface SackBlock {
  readonly left: SeqNum;
  readonly right: SeqNum;
}

/** An option the parser does not interpret, kept byte for byte. */
export interface UnknownOption {
  readonly kind: number;
  /** Absolute offset of the kind byte in the packet buffer. */
  readonly offset: number;
  /** Option length in bytes, including kind and length bytes. */
  readonly length: number;
}

/**
 * The parsed options of a segment. Absent options are `undefined` (or
 * `false`, or empty). Offsets are absolute positions in the packet buffer,
 * for in-place rewriting; -1 when the option is absent. When an option
 * appears twice the last one wins, as in Linux's `tcp_parse_options`.
 */
export interface TcpOptions {
  /** Maximum segment size in bytes (SYN only, RFC 9293 3.7.1). */
  mss: number | undefined;
  /** Window shift offered, as sent (0 to 255; use at most 14, RFC 7323 2.3). */
  windowScale: number | undefined;
  /** SACK-permitted was offered (RFC 2018 2). */
  sackPermitted: boolean;
  /** SACK blocks, one to four (RFC 2018 3); empty when there is no SACK option. */
  sackBlocks: SackBlock[];
  /** Absolute offset of the first SACK block's left edge, or -1. */
  sackOffset: number;
  /** TSval (RFC 7323 3), or undefined without a timestamps option. */
  tsVal: number | undefined;
  /** TSecr (RFC 7323 3), or undefined without a timestamps option. */
  tsEcr: number | undefined;
  /** Absolute offset of TSval (TSecr follows it), or -1. */
  timestampsOffset: number;
  /** Options of other kinds, in order. */
  unknown: UnknownOption[];
}

/**
 * A parsed TCP/IPv4 packet: a view over `buf`. Change fields only through
 * the setters in this module so that buffer, view and checksum agree.
 */
export interface TcpPacket {
  /** The whole IPv4 packet. */
  readonly buf: Uint8Array;
  /** The IPv4 header fields. */
  readonly ip: Ipv4Header;
  /** Absolute offset of the TCP header (the IPv4 header length). */
  readonly tcpOffset: number;
  /** TCP header length in bytes (data offset * 4), 20 to 60. */
  readonly tcpHeaderLength: number;
  /** Absolute offset of the first payload byte. */
  readonly payloadOffset: number;
  /** Payload length in bytes (may exceed one MSS for a GSO packet). */
  readonly payloadLength: number;
  readonly srcPort: number;
  readonly dstPort: number;
  seq: SeqNum;
  ack: SeqNum;
  /** The flag byte; test bits with {@link TcpFlag}. */
  readonly flags: number;
  /** The raw 16-bit window field, before any window scaling. */
  window: number;
  readonly options: TcpOptions;
  /**
   * The checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL,
   * as NFQUEUE hands out locally generated and GSO packets): the kernel or
   * NIC sums the segment itself later, so changes inside the segment must not
   * touch the field. Cleared by {@link completeTcpChecksum}.
   */
  checksumPartial: boolean;
  /**
   * Only the first `buf.length` bytes of the datagram were captured. Header
   * setters still work (RFC 1624 needs only the old and new field values),
   * but the bytes cannot be handed back as a replacement: the kernel would
   * cut the packet to them.
   */
  readonly truncated: boolean;
}

/** Result of {@link parseTcpPacket}: the packet view, or why it was rejected. */
export type TcpParseResult =
  | { readonly ok: true; readonly packet: TcpPacket }
  | { readonly ok: false; readonly reason: MalformedReason };

/** Result of {@link parseTcpOptions}. */
export type TcpOptionsResult =
  | { readonly ok: true; readonly options: TcpOptions }
  | { readonly ok: false; readonly reason: 'bad-option-length' | 'bad-option-size' };

/** Options for {@link parseTcpPacket}. */
export interface ParseTcpOptions {
  /** The checksum field is partial (see {@link TcpPacket.checksumPartial}). Default false. */
  checksumPartial?: boolean;
  /**
   * Accept a capture shorter than the datagram (see `ParseIpv4Options`);
   * IPv4 and TCP headers must still be complete. Default false.
   */
  allowTruncated?: boolean;
}

/**
 * Parse an IPv4 packet carrying TCP. Checks the IPv4 header (see
 * `parseIpv4`), protocol 6, a 20-byte TCP header within the datagram, a data
 * offset of at least 5 whose header fits the datagram, and well-formed
 * options. Does not verify the checksum (the kernel does; see
 * {@link verifyTcpChecksum}).
 */
export function parseTcpPacket(buf: Uint8Array, opts?: ParseTcpOptions): TcpParseResult {
  const ipr = parseIpv4(buf, { allowTruncated: opts?.allowTruncated ?? false });
  if (!ipr.ok) return ipr;
  const ip = ipr.header;
  if (ip.protocol !== IP_PROTO_TCP) return { ok: false, reason: 'not-tcp' };
  const t = ip.headerLength;
  const end = ip.totalLength;
  // Headers must be inside both the datagram and the captured bytes.
  const have = Math.min(end, buf.length);
  if (t + TCP.MIN_HEADER_LENGTH > have) return { ok: false, reason: 'truncated-tcp-header' };
  const tcpHeaderLength = ((buf[t + TCP.DATA_OFFSET] as number) >> 4) * 4;
  if (tcpHeaderLength < TCP.MIN_HEADER_LENGTH || t + tcpHeaderLength > have) {
    return { ok: false, reason: 'bad-data-offset' };
  }
  const or = parseTcpOptions(buf, t + TCP.MIN_HEADER_LENGTH, t + tcpHeaderLength);
  if (!or.ok) return or;
  return {
    ok: true,
    packet: {
      buf,
      ip,
      tcpOffset: t,
      tcpHeaderLength,
      payloadOffset: t + tcpHeaderLength,
      payloadLength: end - t - tcpHeaderLength,
      srcPort: readU16(buf, t + TCP.SRC_PORT),
      dstPort: readU16(buf, t + TCP.DST_PORT),
      seq: seq(readU32(buf, t + TCP.SEQ)),
      ack: seq(readU32(buf, t + TCP.ACK)),
      flags: buf[t + TCP.FLAGS] as number,
      window: readU16(buf, t + TCP.WINDOW),
      options: or.options,
      checksumPartial: opts?.checksumPartial ?? false,
      truncated: end > buf.length,
    },
  };
}

/**
 * Parse the TCP options in `buf[start, end)` (RFC 9293 3.2). EOL ends the
 * list; NOP is skipped. Every other option must have a length byte inside
 * the range, at least 2, reaching no further than `end`
 * (`bad-option-length`), and the known kinds must have their fixed sizes:
 * MSS 4, window scale 3, SACK-permitted 2, timestamps 10, SACK 2 + 8n with
 * n from 1 to 4 (`bad-option-size`).
 */
export function parseTcpOptions(buf: Uint8Array, start: number, end: number): TcpOptionsResult {
  const options: TcpOptions = {
    mss: undefined,
    windowScale: undefined,
    sackPermitted: false,
    sackBlocks: [],
    sackOffset: -1,
    tsVal: undefined,
    tsEcr: undefined,
    timestampsOffset: -1,
    unknown: [],
  };
  let i = start;
  while (i < end) {
    const kind = buf[i] as number;
    if (kind === TcpOptionKind.EOL) break;
    if (kind === TcpOptionKind.NOP) {
      i += 1;
      continue;
    }
    if (i + 1 >= end) return { ok: false, reason: 'bad-option-length' };
    const len = buf[i + 1] as number;
    if (len < 2 || i + len > end) return { ok: false, reason: 'bad-option-length' };
    switch (kind) {
      case TcpOptionKind.MSS:
        if (len !== 4) return { ok: false, reason: 'bad-option-size' };
        options.mss = readU16(buf, i + 2);
        break;
      case TcpOptionKind.WINDOW_SCALE:
        if (len !== 3) return { ok: false, reason: 'bad-option-size' };
        options.windowScale = buf[i + 2] as number;
        break;
      case TcpOptionKind.SACK_PERMITTED:
        if (len !== 2) return { ok: false, reason: 'bad-option-size' };
        options.sackPermitted = true;
        break;
      case TcpOptionKind.SACK: {
        // 40 option bytes hold at most 4 blocks (RFC 2018 3).
        if (len < 10 || (len - 2) % 8 !== 0 || len > 34) return { ok: false, reason: 'bad-option-size' };
        const blocks: SackBlock[] = [];
        for (let b = i + 2; b < i + len; b += 8) {
          blocks.push({ left: seq(readU32(buf, b)), right: seq(readU32(buf, b + 4)) });
        }
        options.sackBlocks = blocks;
        options.sackOffset = i + 2;
        break;
      }
      case TcpOptionKind.TIMESTAMPS:
        if (len !== 10) return { ok: false, reason: 'bad-option-size' };
        options.tsVal = readU32(buf, i + 2);
        options.tsEcr = readU32(buf, i + 6);
        options.timestampsOffset = i + 2;
        break;
      default:
        options.unknown.push({ kind, offset: i, length: len });
    }
    i += len;
  }
  return { ok: true, options };
}

/** True when every bit of `flag` is set in the packet's flags. */
export function hasFlag(pkt: TcpPacket, flag: number): boolean {
  return (pkt.flags & flag) === flag;
}

/**
 * Sequence space the segment occupies: payload bytes plus one for SYN and
 * one for FIN (RFC 9293 3.4).
 */
export function segmentLength(pkt: TcpPacket): number {
  return pkt.payloadLength + (pkt.flags & TcpFlag.SYN ? 1 : 0) + (pkt.flags & TcpFlag.FIN ? 1 : 0);
}

/** The TCP length the pseudo-header counts: header plus payload, in bytes. */
export function tcpLength(pkt: TcpPacket): number {
  return pkt.tcpHeaderLength + pkt.payloadLength;
}

/** The checksum field as stored. */
export function readTcpChecksum(pkt: TcpPacket): number {
  return readU16(pkt.buf, pkt.tcpOffset + TCP.CHECKSUM);
}

/**
 * True when the stored checksum is right: the full checksum for an ordinary
 * packet, or the folded pseudo-header sum for a partial one.
 */
export function verifyTcpChecksum(pkt: TcpPacket): boolean {
  // A truncated full-checksum packet cannot be summed; only a partial one can.
  if (pkt.truncated && !pkt.checksumPartial) return false;
  return readTcpChecksum(pkt) === expectedChecksum(pkt);
}

/**
 * Recompute the checksum field from scratch: the full checksum, or for a
 * partial packet the folded pseudo-header sum. Use only where incremental
 * update does not apply (building a packet); the data path updates.
 */
export function writeTcpChecksum(pkt: TcpPacket): void {
  writeU16(pkt.buf, pkt.tcpOffset + TCP.CHECKSUM, expectedChecksum(pkt));
}

/**
 * Turn a partial checksum into the full one (a no-op for a packet whose
 * checksum is already full). Needed before a rewritten packet goes back
 * through NFQUEUE: the kernel's mangle step marks the packet CHECKSUM_NONE,
 * so nothing would complete a partial sum later and the receiver (or the
 * peer, for locally generated packets) would drop the segment. GSO packets
 * are safe too: segmentation recomputes each segment's checksum. Returns
 * false, changing nothing, for a truncated capture, which cannot be summed.
 */
export function completeTcpChecksum(pkt: TcpPacket): boolean {
  if (!pkt.checksumPartial) return true;
  if (pkt.truncated) return false;
  pkt.checksumPartial = false;
  writeTcpChecksum(pkt);
  return true;
}

function expectedChecksum(pkt: TcpPacket): number {
  const len = tcpLength(pkt);
  if (pkt.checksumPartial) return fold(pseudoHeaderSum(pkt.ip.src, pkt.ip.dst, IP_PROTO_TCP, len));
  return tcpChecksum(pkt.buf, pkt.tcpOffset, len, pkt.ip.src, pkt.ip.dst);
}

/** Set the sequence number, updating the checksum (RFC 1624 eqn. 3). */
export function setSeq(pkt: TcpPacket, value: SeqNum): void {
  setU32(pkt, pkt.tcpOffset + TCP.SEQ, value);
  pkt.seq = value;
}

/** Set the acknowledgment number, updating the checksum. */
export function setAck(pkt: TcpPacket, value: SeqNum): void {
  setU32(pkt, pkt.tcpOffset + TCP.ACK, value);
  pkt.ack = value;
}

/** Set the raw 16-bit window field (unscaled units), updating the checksum. */
export function setWindow(pkt: TcpPacket, value: number): void {
  const off = pkt.tcpOffset + TCP.WINDOW;
  const old = readU16(pkt.buf, off);
  writeU16(pkt.buf, off, value);
  if (!pkt.checksumPartial) {
    const coff = pkt.tcpOffset + TCP.CHECKSUM;
    writeU16(pkt.buf, coff, csumUpdate16(readU16(pkt.buf, coff), old, value & 0xffff));
  }
  pkt.window = value & 0xffff;
}

/**
 * Replace SACK block `index` (0-based, below `options.sackBlocks.length`),
 * updating the checksum. SACK options may sit at any alignment.
 */
export function setSackBlock(pkt: TcpPacket, index: number, block: SackBlock): void {
  const blocks = pkt.options.sackBlocks;
  if (index < 0 || index >= blocks.length) throw new RangeError(`no SACK block ${index}`);
  const off = pkt.options.sackOffset + index * 8;
  setU32(pkt, off, block.left);
  setU32(pkt, off + 4, block.right);
  blocks[index] = { left: block.left, right: block.right };
}

/**
 * Remove the SACK blocks `keep` rejects, in place, updating the checksum:
 * the kept blocks move to the front of the option, its length byte shrinks,
 * and the freed bytes become NOPs (RFC 9293 3.2), so the header keeps its
 * length; with no block left the whole option becomes NOPs. Returns how
 * many blocks were removed.
 */
export function retainSackBlocks(pkt: TcpPacket, keep: (block: SackBlock) => boolean): number {
  const blocks = pkt.options.sackBlocks;
  const kept = blocks.filter(keep);
  if (kept.length === blocks.length) return 0;
  const buf = pkt.buf;
  const first = pkt.options.sackOffset;
  const kindOff = first - 2;
  const end = first + 8 * blocks.length;
  // The checksum counts 16-bit words from the TCP header, which starts at an
  // even offset: widen the changed bytes to whole words.
  const lo = kindOff - (kindOff & 1);
  const hi = end + (end & 1);
  const oldSum = pkt.checksumPartial ? 0 : onesSum(buf, lo, hi);
  let o = kindOff;
  if (kept.length > 0) {
    buf[kindOff + 1] = 2 + 8 * kept.length;
    o = first;
    for (const b of kept) {
      writeU32(buf, o, b.left);
      writeU32(buf, o + 4, b.right);
      o += 8;
    }
  }
  buf.fill(TcpOptionKind.NOP, o, end);
  if (!pkt.checksumPartial) {
    const coff = pkt.tcpOffset + TCP.CHECKSUM;
    writeU16(buf, coff, csumReplace(readU16(buf, coff), oldSum, onesSum(buf, lo, hi)));
  }
  const removed = blocks.length - kept.length;
  blocks.splice(0, blocks.length, ...kept);
  if (kept.length === 0) pkt.options.sackOffset = -1;
  return removed;
}

/** Set TSval; the packet must carry a timestamps option. Updates the checksum. */
export function setTsVal(pkt: TcpPacket, value: number): void {
  if (pkt.options.timestampsOffset < 0) throw new RangeError('no timestamps option');
  setU32(pkt, pkt.options.timestampsOffset, value >>> 0);
  pkt.options.tsVal = value >>> 0;
}

/** Set TSecr; the packet must carry a timestamps option. Updates the checksum. */
export function setTsEcr(pkt: TcpPacket, value: number): void {
  if (pkt.options.timestampsOffset < 0) throw new RangeError('no timestamps option');
  setU32(pkt, pkt.options.timestampsOffset + 4, value >>> 0);
  pkt.options.tsEcr = value >>> 0;
}

/**
 * Write a 32-bit value at absolute offset `off` inside the TCP header and
 * update the checksum. RFC 1624 works on 16-bit words counted from the start
 * of the segment; a field at an odd offset (options need no alignment)
 * straddles three words, so those are summed before and after the write.
 */
function setU32(pkt: TcpPacket, off: number, value: number): void {
  const buf = pkt.buf;
  const rel = off - pkt.tcpOffset;
  if (pkt.checksumPartial) {
    // The field covers only the pseudo-header, which this does not change.
    writeU32(buf, off, value);
    return;
  }
  const coff = pkt.tcpOffset + TCP.CHECKSUM;
  if ((rel & 1) === 0) {
    const old = readU32(buf, off);
    writeU32(buf, off, value);
    writeU16(buf, coff, csumUpdate32(readU16(buf, coff), old, value >>> 0));
    return;
  }
  // Odd offset: the field lies within header words [off-1, off+5).
  const oldSum = onesSum(buf, off - 1, off + 5);
  writeU32(buf, off, value);
  const newSum = onesSum(buf, off - 1, off + 5);
  writeU16(buf, coff, csumReplace(readU16(buf, coff), oldSum, newSum));
}

/**
 * {@link parseTcpPacket} for tools and tests, where bad input is an error to
 * report rather than a packet to count and drop.
 * @throws MalformedPacketError (`FTCP_ERR_MALFORMED_PACKET`) with the reason.
 */
export function parseTcpPacketOrThrow(buf: Uint8Array, opts?: ParseTcpOptions): TcpPacket {
  const r = parseTcpPacket(buf, opts);
  if (!r.ok) throw new MalformedPacketError(r.reason);
  return r.packet;
}
