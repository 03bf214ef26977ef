/**
 * A small reader of classic pcap files (the format `tcpdump -w` writes),
 * returning the TCP segments in them. Pure: bytes in, records out. Later
 * tests use it to prove "no FIN or RST after the crash" and "never two
 * speakers" (the Ethernet source MAC tells which host sent a segment for the
 * shared VIP).
 *
 * Handles: both byte orders, microsecond and nanosecond timestamps; link
 * types Ethernet (with one or two VLAN tags), Linux cooked v1 and v2 (`-i
 * any`) and raw IP; IPv4 with options; TCP with options. Anything else (ARP,
 * IPv6, UDP, fragments after the first) is counted, not returned. A record
 * cut short by a killed tcpdump ends the file quietly (`truncated`).
 */
import { readFile } from 'node:fs/promises';
import { TcpFlag } from '@ftcp/ssw';
import { TestbedError, TestbedErrorCode } from './errors.js';

/** TCP header flag bits: the wrap's own table, one definition for the project. */
export { TcpFlag };

/** One TCP segment from a capture. */
export interface TcpSegment {
  /** Index of the record in the file, from 0. */
  readonly index: number;
  /** Capture time in seconds since the epoch (microsecond precision at least). */
  readonly time: number;
  /** Whole seconds of the capture time. */
  readonly tsSec: number;
  /** Nanoseconds within `tsSec`. */
  readonly tsNsec: number;
  /** Ethernet source MAC, lower-case `aa:bb:...`; undefined for link types without one. */
  readonly srcMac: string | undefined;
  /** Ethernet destination MAC; undefined for link types without one. */
  readonly dstMac: string | undefined;
  /** IPv4 source address, dotted. */
  readonly src: string;
  /** IPv4 destination address, dotted. */
  readonly dst: string;
  /** IPv4 identification field. */
  readonly ipId: number;
  /** IPv4 time to live. */
  readonly ttl: number;
  readonly srcPort: number;
  readonly dstPort: number;
  /** Raw flag bits; see {@link TcpFlag}. */
  readonly flags: number;
  /** Sequence number (unsigned 32-bit). */
  readonly seq: number;
  /** Acknowledgment number (unsigned 32-bit; meaningful when ACK is set). */
  readonly ack: number;
  /** Window field as sent, before window scaling. */
  readonly window: number;
  /** TCP header length in bytes, options included. */
  readonly headerLength: number;
  /**
   * Payload bytes the segment carried, from the IP total length (so a short
   * snap length does not hide them). With GSO a single record may carry
   * many MSS worth.
   */
  readonly payloadLength: number;
}

/** What {@link parsePcap} found. */
export interface PcapCapture {
  /** Link type from the file header (1 Ethernet, 113 Linux cooked, 276 cooked v2, 101/228 raw IPv4). */
  readonly linkType: number;
  /** Whether timestamps are in nanoseconds (magic a1b23c4d). */
  readonly nanosecond: boolean;
  /** Number of packet records. */
  readonly packets: number;
  /** The TCP/IPv4 segments, in file order. */
  readonly segments: readonly TcpSegment[];
  /** Records that were not TCP over IPv4, or too short to parse. */
  readonly skipped: number;
  /** The last record was cut short (tcpdump killed mid-write). */
  readonly truncated: boolean;
}

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;
const FILE_HEADER = 24;
const RECORD_HEADER = 16;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = [0x8100, 0x88a8, 0x9100];
const IPPROTO_TCP = 6;

/** Link types this reader understands. */
export const LinkType = {
  ETHERNET: 1,
  RAW_OLD: 12,
  RAW: 101,
  LINUX_SLL: 113,
  IPV4: 228,
  LINUX_SLL2: 276,
} as const;

/**
 * Parses a classic pcap file.
 *
 * @throws TestbedError `FTCP_E2E_BAD_PCAP` when the file header is missing or
 *   has an unknown magic (pcapng is not supported: tcpdump writes classic
 *   pcap unless told otherwise).
 */
export function parsePcap(bytes: Uint8Array): PcapCapture {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < FILE_HEADER) throw new TestbedError(TestbedErrorCode.BAD_PCAP, `pcap file is ${bytes.byteLength} bytes, shorter than its 24-byte header`);
  const magicBE = view.getUint32(0, false);
  const magicLE = view.getUint32(0, true);
  let le: boolean;
  let nanosecond: boolean;
  if (magicLE === MAGIC_US || magicLE === MAGIC_NS) {
    le = true;
    nanosecond = magicLE === MAGIC_NS;
  } else if (magicBE === MAGIC_US || magicBE === MAGIC_NS) {
    le = false;
    nanosecond = magicBE === MAGIC_NS;
  } else {
    throw new TestbedError(TestbedErrorCode.BAD_PCAP, `not a classic pcap file (magic 0x${magicBE.toString(16).padStart(8, '0')})`);
  }
  // The low 16 bits hold the link type; the upper bits may carry FCS info.
  const linkType = view.getUint32(20, le) & 0xffff;
  const segments: TcpSegment[] = [];
  let packets = 0;
  let skipped = 0;
  let truncated = false;
  let off = FILE_HEADER;
  while (off < bytes.byteLength) {
    if (off + RECORD_HEADER > bytes.byteLength) {
      truncated = true;
      break;
    }
    const tsSec = view.getUint32(off, le);
    const tsFrac = view.getUint32(off + 4, le);
    const inclLen = view.getUint32(off + 8, le);
    const start = off + RECORD_HEADER;
    if (start + inclLen > bytes.byteLength) {
      truncated = true;
      break;
    }
    const index = packets++;
    const tsNsec = nanosecond ? tsFrac : tsFrac * 1000;
    const seg = parseFrame(bytes.subarray(start, start + inclLen), linkType, index, tsSec, tsNsec);
    if (seg) segments.push(seg);
    else skipped++;
    off = start + inclLen;
  }
  return { linkType, nanosecond, packets, segments, skipped, truncated };
}

/** Reads and parses a pcap file; see {@link parsePcap}. */
export async function readPcap(path: string): Promise<PcapCapture> {
  return parsePcap(await readFile(path));
}

function mac(b: Uint8Array, off: number): string {
  return Array.from(b.subarray(off, off + 6), (x) => x.toString(16).padStart(2, '0')).join(':');
}

function ipv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** Parses one link-layer frame; undefined if it is not TCP over IPv4 or too short. */
function parseFrame(frame: Uint8Array, linkType: number, index: number, tsSec: number, tsNsec: number): TcpSegment | undefined {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let srcMac: string | undefined;
  let dstMac: string | undefined;
  let l3: number;
  let etherType: number;
  switch (linkType) {
    case LinkType.ETHERNET: {
      if (frame.byteLength < 14) return undefined;
      dstMac = mac(frame, 0);
      srcMac = mac(frame, 6);
      etherType = v.getUint16(12);
      l3 = 14;
      for (let tags = 0; tags < 2 && ETHERTYPE_VLAN.includes(etherType); tags++) {
        if (frame.byteLength < l3 + 4) return undefined;
        etherType = v.getUint16(l3 + 2);
        l3 += 4;
      }
      break;
    }
    case LinkType.LINUX_SLL: {
      // Packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2).
      if (frame.byteLength < 16) return undefined;
      if (v.getUint16(4) === 6) srcMac = mac(frame, 6);
      etherType = v.getUint16(14);
      l3 = 16;
      break;
    }
    case LinkType.LINUX_SLL2: {
      // Protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8).
      if (frame.byteLength < 20) return undefined;
      etherType = v.getUint16(0);
      if (v.getUint8(11) === 6) srcMac = mac(frame, 12);
      l3 = 20;
      break;
    }
    case LinkType.RAW_OLD:
    case LinkType.RAW:
    case LinkType.IPV4:
      etherType = ETHERTYPE_IPV4;
      l3 = 0;
      break;
    default:
      return undefined;
  }
  if (etherType !== ETHERTYPE_IPV4) return undefined;
  // IPv4 (RFC 791): check every length before reading a field.
  if (frame.byteLength < l3 + 20) return undefined;
  const verIhl = v.getUint8(l3);
  if (verIhl >> 4 !== 4) return undefined;
  const ihl = (verIhl & 0x0f) * 4;
  if (ihl < 20 || frame.byteLength < l3 + ihl) return undefined;
  if (v.getUint8(l3 + 9) !== IPPROTO_TCP) return undefined;
  // A non-first fragment carries no TCP header.
  if ((v.getUint16(l3 + 6) & 0x1fff) !== 0) return undefined;
  let totalLength = v.getUint16(l3 + 2);
  // GSO packets above 64 KiB (BIG TCP) carry 0 here; fall back to what was captured.
  if (totalLength === 0) totalLength = frame.byteLength - l3;
  const l4 = l3 + ihl;
  if (frame.byteLength < l4 + 20) return undefined;
  const headerLength = (v.getUint8(l4 + 12) >> 4) * 4;
  if (headerLength < 20 || totalLength < ihl + headerLength) return undefined;
  return {
    index,
    time: tsSec + tsNsec / 1e9,
    tsSec,
    tsNsec,
    srcMac,
    dstMac,
    src: ipv4(frame, l3 + 12),
    dst: ipv4(frame, l3 + 16),
    ipId: v.getUint16(l3 + 4),
    ttl: v.getUint8(l3 + 8),
    srcPort: v.getUint16(l4),
    dstPort: v.getUint16(l4 + 2),
    seq: v.getUint32(l4 + 4),
    ack: v.getUint32(l4 + 8),
    flags: v.getUint8(l4 + 13),
    window: v.getUint16(l4 + 14),
    headerLength,
    payloadLength: totalLength - ihl - headerLength,
  };
}

/**
 * Flag letters in tcpdump's order and spelling (`F S R P . U E W`), e.g. `S.`
 * for SYN-ACK, `R` for RST, `FP.` for FIN-PSH-ACK, `none` for no flag: the
 * same text as tcpdump's `Flags [...]`, so the two can be compared.
 */
export function flagString(flags: number): string {
  const order: Array<[number, string]> = [
    [TcpFlag.FIN, 'F'],
    [TcpFlag.SYN, 'S'],
    [TcpFlag.RST, 'R'],
    [TcpFlag.PSH, 'P'],
    [TcpFlag.ACK, '.'],
    [TcpFlag.URG, 'U'],
    [TcpFlag.ECE, 'E'],
    [TcpFlag.CWR, 'W'],
  ];
  const s = order.map(([bit, letter]) => (flags & bit ? letter : '')).join('');
  return s === '' ? 'none' : s;
}

/** Whether the segment has every bit of `flag` set. */
export function hasFlag(seg: TcpSegment, flag: number): boolean {
  return (seg.flags & flag) === flag;
}

/** One line per segment, like `tcpdump -n`, for assertion messages. */
export function describeSegment(seg: TcpSegment): string {
  return `${seg.time.toFixed(6)} ${seg.srcMac ?? ''} ${seg.src}.${seg.srcPort} > ${seg.dst}.${seg.dstPort} [${flagString(seg.flags)}] seq ${seg.seq} ack ${seg.ack} win ${seg.window} len ${seg.payloadLength}`;
}
