/**
 * Bounds-checked little-endian readers and a growable writer for the buffer
 * protocol. Decoders run on untrusted input, so every read checks the length
 * first and failures are {@link FtcpError}s, never RangeErrors.
 */
import { ErrorCode, FtcpError } from '../errors.js';

/** Largest integer a 64-bit field may carry: offsets and ids stay exact in a JS number. */
export const MAX_U64_SAFE = Number.MAX_SAFE_INTEGER;
/** The high u32 of {@link MAX_U64_SAFE}: a u64 whose high half exceeds it does not fit. */
const MAX_U64_SAFE_HIGH = 0x1fffff;

/** A cursor over one frame's bytes. */
export class Reader {
  private pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.remaining < n) {
      throw new FtcpError(ErrorCode.TRUNCATED_FRAME, `frame ends before ${what} (needs ${n} bytes, has ${this.remaining})`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf.readUInt8(this.pos++);
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A u64 that must fit a JS number exactly (ids, offsets, LSNs, call numbers). */
  u64(what: string): number {
    this.need(8, what);
    // Two u32 halves rather than a BigInt: this runs several times per record.
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    if (hi > MAX_U64_SAFE_HIGH) {
      throw new FtcpError(ErrorCode.MALFORMED_FRAME, `${what} ${this.buf.readBigUInt64LE(this.pos)} exceeds 2^53-1`);
    }
    this.pos += 8;
    return hi * 2 ** 32 + lo;
  }

  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** A short string: u8 length, then that many UTF-8 bytes; empty not allowed. */
  name(what: string): string {
    const len = this.u8(`${what} length`);
    if (len === 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `${what} is empty`);
    return this.bytes(len, what).toString('utf8');
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }

  /** Checks that nothing is left over: trailing garbage is a malformed frame. */
  end(what: string): void {
    if (this.remaining !== 0) {
      throw new FtcpError(ErrorCode.MALFORMED_FRAME, `${this.remaining} unexpected trailing bytes after ${what}`);
    }
  }
}

/** Builds a frame with exact-size allocation where the size is known up front. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(size = 64) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.room(1);
    this.buf.writeUInt8(v, this.pos++);
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: number): this {
    this.room(8);
    if (Number.isSafeInteger(v) && v >= 0) {
      // Two u32 halves rather than a BigInt: this runs several times per record.
      this.buf.writeUInt32LE(v % 2 ** 32, this.pos);
      this.buf.writeUInt32LE(Math.floor(v / 2 ** 32), this.pos + 4);
    } else {
      // Beyond 2^53 or not a count at all: BigInt writes it exactly or refuses it.
      this.buf.writeBigUInt64LE(BigInt(v), this.pos);
    }
    this.pos += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  name(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length === 0 || b.length > 255) throw new FtcpError(ErrorCode.BAD_CONFIG, `name must be 1..255 bytes of UTF-8: ${JSON.stringify(s)}`);
    return this.u8(b.length).bytes(b);
  }

  /** Writes `v` at an absolute offset already reserved (for length fields). */
  patchU32(at: number, v: number): this {
    this.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  get length(): number {
    return this.pos;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
