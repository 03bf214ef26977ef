/**
 * A TCP/IPv4 packet builder for tests. It writes fields with its own code
 * (not the setters under test) and computes checksums from scratch.
 */
import { ipv4HeaderChecksum, pseudoHeaderSum, tcpChecksum, fold } from '../../src/wire/checksum.js';

/** Option encoders: each returns the option's raw bytes. */
export const opt = {
  nop: (): number[] => [1],
  eol: (): number[] => [0],
  mss: (v: number): number[] => [2, 4, v >>> 8, v & 0xff],
  wscale: (v: number): number[] => [3, 3, v],
  sackPermitted: (): number[] => [4, 2],
  sack: (blocks: Array<[number, number]>): number[] => [5, 2 + 8 * blocks.length, ...blocks.flatMap(([l, r]) => [...u32(l), ...u32(r)])],
  timestamps: (tsVal: number, tsEcr: number): number[] => [8, 10, ...u32(tsVal), ...u32(tsEcr)],
  raw: (...bytes: number[]): number[] => bytes,
};

/** Fields of a packet to build; everything has a default. */
export interface PacketSpec {
  src?: number;
  dst?: number;
  srcPort?: number;
  dstPort?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  urgent?: number;
  /** Concatenated option bytes; padded with EOL to a multiple of 4. */
  options?: number[][];
  payload?: Uint8Array | string;
  /** Store the partial (pseudo-header only) checksum instead of the full one. */
  partial?: boolean;
  ttl?: number;
  id?: number;
}

/** Client 10.0.0.1:40000, server 10.0.0.2:8080 unless the spec says otherwise. */
export const CLIENT = { addr: 0x0a000001, port: 40000 };
export const SERVER = { addr: 0x0a000002, port: 8080 };

/** Build an IPv4 packet carrying one TCP segment, with correct checksums. */
export function buildPacket(spec: PacketSpec = {}): Buffer {
  const optBytes = (spec.options ?? []).flat();
  while (optBytes.length % 4 !== 0) optBytes.push(0);
  if (optBytes.length > 40) throw new Error('options longer than 40 bytes');
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : Buffer.from(spec.payload ?? []);
  const tcpLen = 20 + optBytes.length + payload.length;
  const total = 20 + tcpLen;
  const b = Buffer.alloc(total);
  b[0] = 0x45;
  b.writeUInt16BE(total, 2);
  b.writeUInt16BE(spec.id ?? 0x1234, 4);
  b.writeUInt16BE(0x4000, 6); // DF
  b[8] = spec.ttl ?? 64;
  b[9] = 6;
  const src = spec.src ?? CLIENT.addr;
  const dst = spec.dst ?? SERVER.addr;
  b.writeUInt32BE(src >>> 0, 12);
  b.writeUInt32BE(dst >>> 0, 16);
  b.writeUInt16BE(ipv4HeaderChecksum(b, 0, 20), 10);
  const t = 20;
  b.writeUInt16BE(spec.srcPort ?? CLIENT.port, t);
  b.writeUInt16BE(spec.dstPort ?? SERVER.port, t + 2);
  b.writeUInt32BE((spec.seq ?? 1000) >>> 0, t + 4);
  b.writeUInt32BE((spec.ack ?? 0) >>> 0, t + 8);
  b[t + 12] = ((20 + optBytes.length) / 4) << 4;
  b[t + 13] = spec.flags ?? 0x10;
  b.writeUInt16BE(spec.window ?? 65535, t + 14);
  b.writeUInt16BE(spec.urgent ?? 0, t + 18);
  Buffer.from(optBytes).copy(b, t + 20);
  payload.copy(b, t + 20 + optBytes.length);
  const c = spec.partial ? fold(pseudoHeaderSum(src, dst, 6, tcpLen)) : tcpChecksum(b, t, tcpLen, src, dst);
  b.writeUInt16BE(c, t + 16);
  return b;
}

/** Outgoing (server to client) spec defaults: swap addresses and ports. */
export function fromServer(spec: PacketSpec = {}): PacketSpec {
  return { src: SERVER.addr, dst: CLIENT.addr, srcPort: SERVER.port, dstPort: CLIENT.port, ...spec };
}

function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}
