/**
 * IPv4 header view (RFC 791 3.1). Pure: no I/O. The parser checks every
 * length before it reads a field and returns an error value; it never
 * throws, because its input comes from the network.
 */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { fold, ipv4HeaderChecksum, onesSum } from './checksum.js';

/** Byte offsets of IPv4 header fields, and the header's size limits. */
export const IPV4 = {
  VERSION_IHL: 0,
  TOS: 1,
  TOTAL_LENGTH: 2,
  ID: 4,
  FLAGS_FRAGMENT: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
  /** IHL 5: a header without options. */
  MIN_HEADER_LENGTH: 20,
  /** IHL 15. */
  MAX_HEADER_LENGTH: 60,
} as const;

/** IP protocol number of TCP. */
export const IP_PROTO_TCP = 6;

/** Why an IPv4 header was rejected. */
export type Ipv4MalformedReason =
  | 'truncated-ip-header'
  | 'not-ipv4'
  | 'bad-ip-header-length'
  | 'bad-ip-total-length'
  | 'ip-fragment';

/** The fields of a parsed IPv4 header that the wrap needs. */
export interface Ipv4Header {
  /** Header length in bytes (IHL * 4), 20 to 60. */
  readonly headerLength: number;
  /** Total datagram length in bytes from the header; more than the buffer only when truncation was allowed. */
  readonly totalLength: number;
  /** Protocol number (6 for TCP). */
  readonly protocol: number;
  /** Source address as an unsigned 32-bit integer. */
  readonly src: number;
  /** Destination address as an unsigned 32-bit integer. */
  readonly dst: number;
}

/** Options of {@link parseIpv4}. */
export interface ParseIpv4Options {
  /**
   * The buffer may be a truncated capture of a longer datagram (NFQUEUE
   * copies at most 65531 bytes): accept a total length beyond the buffer.
   * Only for packets the kernel already validated (NFQUEUE), never for raw
   * input. Headers must still be complete.
   */
  allowTruncated?: boolean;
}

/** Result of {@link parseIpv4}: the header, or why it was rejected. */
export type Ipv4ParseResult =
  | { readonly ok: true; readonly header: Ipv4Header }
  | { readonly ok: false; readonly reason: Ipv4MalformedReason };

/**
 * Parse the IPv4 header at the start of `buf`. Checks, in order: at least 20
 * bytes, version 4, 5 <= IHL and IHL*4 within the buffer, IHL*4 <= total
 * length <= buffer length (unless `allowTruncated`), and no fragmentation (a fragment's TCP header or
 * payload is incomplete, so the wrap cannot rewrite it). Bytes past the total
 * length (link padding) are ignored.
 */
export function parseIpv4(buf: Uint8Array, opts?: ParseIpv4Options): Ipv4ParseResult {
  if (buf.length < IPV4.MIN_HEADER_LENGTH) return { ok: false, reason: 'truncated-ip-header' };
  const vihl = buf[IPV4.VERSION_IHL] as number;
  if (vihl >> 4 !== 4) return { ok: false, reason: 'not-ipv4' };
  const headerLength = (vihl & 0x0f) * 4;
  if (headerLength < IPV4.MIN_HEADER_LENGTH) return { ok: false, reason: 'bad-ip-header-length' };
  if (headerLength > buf.length) return { ok: false, reason: 'truncated-ip-header' };
  const totalLength = readU16(buf, IPV4.TOTAL_LENGTH);
  if (totalLength < headerLength || (totalLength > buf.length && !opts?.allowTruncated)) {
    return { ok: false, reason: 'bad-ip-total-length' };
  }
  const flagsFragment = readU16(buf, IPV4.FLAGS_FRAGMENT);
  // MF set or a non-zero offset: a fragment (RFC 791 3.2).
  if ((flagsFragment & 0x3fff) !== 0) return { ok: false, reason: 'ip-fragment' };
  return {
    ok: true,
    header: {
      headerLength,
      totalLength,
      protocol: buf[IPV4.PROTOCOL] as number,
      src: readU32(buf, IPV4.SRC),
      dst: readU32(buf, IPV4.DST),
    },
  };
}

/** True when the IPv4 header checksum of the header at the start of `buf` is valid. */
export function verifyIpv4Checksum(buf: Uint8Array, headerLength: number): boolean {
  return fold(onesSum(buf, 0, headerLength)) === 0xffff;
}

/** Recompute and store the IPv4 header checksum of the header at the start of `buf`. */
export function writeIpv4Checksum(buf: Uint8Array, headerLength: number): void {
  writeU16(buf, IPV4.CHECKSUM, ipv4HeaderChecksum(buf, 0, headerLength));
}

/**
 * Write the 20-byte header of a TCP datagram the wrap crafts at the start of
 * `buf`: no options, DF set (RFC 6864 4.1: the id may then be 0), TTL 64,
 * checksum included.
 */
export function writeCraftedIpv4Header(buf: Uint8Array, totalLength: number, src: number, dst: number, id = 0): void {
  buf[0] = 0x45;
  writeU16(buf, 2, totalLength);
  writeU16(buf, 4, id);
  writeU16(buf, 6, 0x4000);
  buf[8] = 64;
  buf[9] = IP_PROTO_TCP;
  writeU32(buf, 12, src);
  writeU32(buf, 16, dst);
  writeIpv4Checksum(buf, 20);
}

/**
 * Parse dotted-quad text ("10.0.0.1") to an unsigned 32-bit address, or
 * `undefined` when it is not exactly four decimal octets in 0..255.
 */
export function parseIpv4Address(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/** Format an unsigned 32-bit address as dotted-quad text. */
export function formatIpv4Address(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}
