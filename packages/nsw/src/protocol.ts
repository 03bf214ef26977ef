/**
 * The shim protocol, the TypeScript side. `native/ftcp_nsw_proto.h` is the
 * other side and the reference for every offset; both are tested against the
 * same golden bytes (`test/golden/*.bin`).
 *
 * Frame layout (little-endian, offsets are ABI):
 *
 * | offset | size | field                                   |
 * |-------:|-----:|-----------------------------------------|
 * |      0 |    1 | version ({@link NSW_PROTOCOL_VERSION})  |
 * |      1 |    1 | type ({@link NswMsgType})               |
 * |      2 |    2 | flags, must be 0                        |
 * |      4 |    4 | body length                             |
 * |      8 |    n | body                                    |
 *
 * Call body (CALL, PLAY, RESULT): call number u64 @0, kind u16 @8, flags u16
 * @10, errno i32 @12, result i64 @16, arg u64 @24, payload length u32 @32,
 * payload @36. The bytes from the kind on are the record the stable buffer
 * keeps for (stream, call number): FT-TCP 3.4's "system call record" (the
 * call, its selecting argument, its result).
 */
import { ErrorCode, FtcpError } from './errors.js';

/** Version byte of every frame; must equal `FTCP_NSW_PROTO_VERSION` in the C header. */
export const NSW_PROTOCOL_VERSION = 1;
/** Size of the fixed frame header. */
export const NSW_HEADER_SIZE = 8;
/** Fixed part of a call body, before the payload. */
export const CALL_FIXED_SIZE = 36;
/** Largest payload of one call (random bytes, a clock value, a hash). */
export const MAX_PAYLOAD = 4096;
/** Largest stream name in a HELLO. */
export const MAX_NAME = 255;
/** Largest frame either side may send. */
export const MAX_FRAME = NSW_HEADER_SIZE + CALL_FIXED_SIZE + MAX_PAYLOAD;

/** Message type tags. Shim to agent below 0x80, agent to shim at 0x80 and above. */
export const NswMsgType = {
  HELLO: 0x01,
  CALL: 0x02,
  WAIT: 0x03,
  PLAY: 0x04,
  STABLE: 0x81,
  RESULT: 0x82,
  ERROR: 0xff,
} as const;

/** Shim modes as carried in HELLO; the shim reads its mode from `FTCP_NSW_MODE`. */
export const ShimMode = { OFF: 0, RECORD: 1, PLAYBACK: 2 } as const;
/** One of the {@link ShimMode} values. */
export type ShimModeValue = (typeof ShimMode)[keyof typeof ShimMode];

/** Flags of a call body. */
export const CallFlag = {
  /** PLAY only: the shim ran the call for real; compare it with the record (FT-TCP 3.7). */
  COMPARE: 0x0001,
  /**
   * RESULT only: there is no record (the primary failed first). The shim
   * performs the call for real and records this stream from now on, starting
   * with this call number.
   */
  LIVE: 0x0002,
} as const;

/** Call kinds: what a record's result and payload mean. Mirrors `FTCP_NSW_KIND_*`. */
export const CallKind = {
  TIME: 1,
  GETTIMEOFDAY: 2,
  CLOCK_GETTIME: 3,
  GETRANDOM: 4,
  GETENTROPY: 5,
  GETPID: 6,
  GETPPID: 7,
  GETTID: 8,
  FORK: 9,
  PTHREAD_CREATE: 10,
  READ_RANDOM: 11,
  POLL: 12,
  SELECT: 13,
  EPOLL_WAIT: 14,
  ACCEPT: 15,
  RECV: 16,
  SEND: 17,
  LOCK: 18,
  SOCKNAME: 19,
} as const;

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;

/**
 * The short hash of sent bytes a SEND record carries (FT-TCP 3.4: "a short
 * hash of the message ... as a safety check against divergence"): 64-bit
 * FNV-1a, the same as `ftcp_nsw_hash` in the C header.
 */
export function sendHash(bytes: Uint8Array): bigint {
  let h = FNV_OFFSET;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * FNV_PRIME);
  return h;
}

/** The name of a call kind, for logs and divergence reports; `kind-N` when unknown. */
export function callKindName(kind: number): string {
  for (const [name, value] of Object.entries(CallKind)) if (value === kind) return name.toLowerCase();
  return `kind-${kind}`;
}

/** One call's outcome: what a record stores (everything but the call number). */
export interface CallData {
  /** A {@link CallKind} value. */
  kind: number;
  /** {@link CallFlag} bits; 0 in records. */
  flags: number;
  /** errno after the call; 0 when the call succeeded. */
  errno: number;
  /** The call's return value, exact as a signed 64-bit integer. */
  result: bigint;
  /**
   * The argument that selects what the call does (clock id, length asked).
   * A replica's call must match the record in kind and arg (FT-TCP 3.7).
   */
  arg: bigint;
  /** Call-specific bytes: a clock value, random bytes, a hash of sent bytes. */
  payload: Buffer;
}

/** A call together with its 1-based, per-stream call number. */
export interface CallBody extends CallData {
  callNo: number;
}

/** A decoded shim protocol message. */
export type NswMessage =
  | { type: 'hello'; pid: number; ppid: number; mode: ShimModeValue; name: string }
  | { type: 'call'; call: CallBody }
  | { type: 'wait'; callNo: number }
  | { type: 'play'; call: CallBody }
  | { type: 'stable'; callNo: number }
  | { type: 'result'; call: CallBody }
  | { type: 'error'; code: string; message: string };

function malformed(what: string): FtcpError {
  return new FtcpError(ErrorCode.MALFORMED_FRAME, what);
}

function truncated(what: string, need: number, have: number): FtcpError {
  return new FtcpError(ErrorCode.TRUNCATED_FRAME, `${what} needs ${need} bytes, has ${have}`);
}

function readCallNo(buf: Buffer, off: number): number {
  const v = buf.readBigUInt64LE(off);
  if (v === 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`call number ${v} is out of range`);
  return Number(v);
}

function header(type: number, bodyLen: number): Buffer {
  const buf = Buffer.alloc(NSW_HEADER_SIZE + bodyLen);
  buf.writeUInt8(NSW_PROTOCOL_VERSION, 0);
  buf.writeUInt8(type, 1);
  buf.writeUInt16LE(0, 2);
  buf.writeUInt32LE(bodyLen, 4);
  return buf;
}

/**
 * Encodes the record bytes of a call: the call body from the kind on. This is
 * what goes to the stable buffer as a call record's data.
 */
export function encodeCallData(c: CallData): Buffer {
  if (c.payload.length > MAX_PAYLOAD) throw malformed(`payload of ${c.payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const buf = Buffer.alloc(CALL_FIXED_SIZE - 8 + c.payload.length);
  buf.writeUInt16LE(c.kind, 0);
  buf.writeUInt16LE(c.flags, 2);
  buf.writeInt32LE(c.errno, 4);
  buf.writeBigInt64LE(BigInt.asIntN(64, c.result), 8);
  buf.writeBigUInt64LE(BigInt.asUintN(64, c.arg), 16);
  buf.writeUInt32LE(c.payload.length, 24);
  c.payload.copy(buf, 28);
  return buf;
}

/** Decodes record bytes made by {@link encodeCallData}; throws an {@link FtcpError} on bad input. */
export function decodeCallData(buf: Buffer): CallData {
  const fixed = CALL_FIXED_SIZE - 8;
  if (buf.length < fixed) throw truncated('call record', fixed, buf.length);
  const plen = buf.readUInt32LE(24);
  if (plen > MAX_PAYLOAD) throw malformed(`payload length ${plen} exceeds ${MAX_PAYLOAD}`);
  if (plen !== buf.length - fixed) throw malformed(`payload length ${plen} disagrees with ${buf.length - fixed} bytes present`);
  return {
    kind: buf.readUInt16LE(0),
    flags: buf.readUInt16LE(2),
    errno: buf.readInt32LE(4),
    result: buf.readBigInt64LE(8),
    arg: buf.readBigUInt64LE(16),
    payload: Buffer.from(buf.subarray(fixed)),
  };
}

function encodeCallBody(type: number, c: CallBody): Buffer {
  if (!Number.isSafeInteger(c.callNo) || c.callNo < 1) throw malformed(`call number ${c.callNo} is out of range`);
  const data = encodeCallData(c);
  const buf = header(type, 8 + data.length);
  buf.writeBigUInt64LE(BigInt(c.callNo), NSW_HEADER_SIZE);
  data.copy(buf, NSW_HEADER_SIZE + 8);
  return buf;
}

/** Encodes one message as a frame. Throws an {@link FtcpError} if a field is out of range. */
export function encodeMessage(msg: NswMessage): Buffer {
  switch (msg.type) {
    case 'hello': {
      const name = Buffer.from(msg.name, 'utf8');
      if (name.length === 0 || name.length > MAX_NAME) throw malformed(`stream name of ${name.length} bytes`);
      const buf = header(NswMsgType.HELLO, 12 + name.length);
      buf.writeUInt32LE(msg.pid, 8);
      buf.writeUInt32LE(msg.ppid, 12);
      buf.writeUInt8(msg.mode, 16);
      buf.writeUInt8(0, 17);
      buf.writeUInt16LE(name.length, 18);
      name.copy(buf, 20);
      return buf;
    }
    case 'call':
      return encodeCallBody(NswMsgType.CALL, msg.call);
    case 'play':
      return encodeCallBody(NswMsgType.PLAY, msg.call);
    case 'result':
      return encodeCallBody(NswMsgType.RESULT, msg.call);
    case 'wait':
    case 'stable': {
      const buf = header(msg.type === 'wait' ? NswMsgType.WAIT : NswMsgType.STABLE, 8);
      buf.writeBigUInt64LE(BigInt(msg.callNo), NSW_HEADER_SIZE);
      return buf;
    }
    case 'error': {
      // Both texts are capped so an ERROR always fits a frame the shim can read.
      const code = Buffer.from(msg.code, 'utf8').subarray(0, 255);
      const text = Buffer.from(msg.message, 'utf8').subarray(0, 1024);
      const buf = header(NswMsgType.ERROR, 4 + code.length + text.length);
      buf.writeUInt16LE(code.length, 8);
      buf.writeUInt16LE(text.length, 10);
      code.copy(buf, 12);
      text.copy(buf, 12 + code.length);
      return buf;
    }
  }
}

/**
 * Checks a frame header and returns its body length. Throws an
 * {@link FtcpError}: TRUNCATED_FRAME when fewer than 8 bytes, BAD_VERSION,
 * MALFORMED_FRAME for non-zero flags, OVERSIZED_FRAME past {@link MAX_FRAME}.
 */
export function checkHeader(buf: Buffer): number {
  if (buf.length < NSW_HEADER_SIZE) throw truncated('frame header', NSW_HEADER_SIZE, buf.length);
  const version = buf.readUInt8(0);
  if (version !== NSW_PROTOCOL_VERSION) {
    throw new FtcpError(ErrorCode.BAD_VERSION, `shim protocol version ${version}, expected ${NSW_PROTOCOL_VERSION}`);
  }
  if (buf.readUInt16LE(2) !== 0) throw malformed('reserved header flags are not zero');
  const len = buf.readUInt32LE(4);
  if (len > MAX_FRAME - NSW_HEADER_SIZE) {
    throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `body of ${len} bytes exceeds ${MAX_FRAME - NSW_HEADER_SIZE}`);
  }
  return len;
}

/**
 * Decodes exactly one frame. Lengths are checked before any field is read;
 * bad input throws an {@link FtcpError} (never a RangeError).
 */
export function decodeMessage(frame: Buffer): NswMessage {
  const len = checkHeader(frame);
  if (frame.length !== NSW_HEADER_SIZE + len) {
    if (frame.length < NSW_HEADER_SIZE + len) throw truncated('frame body', len, frame.length - NSW_HEADER_SIZE);
    throw malformed(`${frame.length - NSW_HEADER_SIZE - len} trailing bytes after the body`);
  }
  const type = frame.readUInt8(1);
  const body = frame.subarray(NSW_HEADER_SIZE);
  switch (type) {
    case NswMsgType.HELLO: {
      if (body.length < 12) throw truncated('HELLO', 12, body.length);
      const mode = body.readUInt8(8);
      if (mode !== ShimMode.RECORD && mode !== ShimMode.PLAYBACK && mode !== ShimMode.OFF) throw malformed(`unknown shim mode ${mode}`);
      if (body.readUInt8(9) !== 0) throw malformed('HELLO reserved byte is not zero');
      const nameLen = body.readUInt16LE(10);
      if (nameLen === 0 || nameLen > MAX_NAME) throw malformed(`stream name length ${nameLen}`);
      if (body.length !== 12 + nameLen) throw malformed(`HELLO name length ${nameLen} disagrees with ${body.length - 12} bytes present`);
      return {
        type: 'hello',
        pid: body.readUInt32LE(0),
        ppid: body.readUInt32LE(4),
        mode: mode as ShimModeValue,
        name: body.subarray(12).toString('utf8'),
      };
    }
    case NswMsgType.CALL:
    case NswMsgType.PLAY:
    case NswMsgType.RESULT: {
      if (body.length < CALL_FIXED_SIZE) throw truncated('call body', CALL_FIXED_SIZE, body.length);
      const call: CallBody = { callNo: readCallNo(body, 0), ...decodeCallData(body.subarray(8)) };
      return { type: type === NswMsgType.CALL ? 'call' : type === NswMsgType.PLAY ? 'play' : 'result', call };
    }
    case NswMsgType.WAIT:
    case NswMsgType.STABLE: {
      if (body.length !== 8) throw body.length < 8 ? truncated('call number', 8, body.length) : malformed('trailing bytes after call number');
      // STABLE 0 is legal: nothing of the stream is stable yet.
      const v = body.readBigUInt64LE(0);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`call number ${v} is out of range`);
      return { type: type === NswMsgType.WAIT ? 'wait' : 'stable', callNo: Number(v) };
    }
    case NswMsgType.ERROR: {
      if (body.length < 4) throw truncated('ERROR', 4, body.length);
      const codeLen = body.readUInt16LE(0);
      const msgLen = body.readUInt16LE(2);
      if (body.length !== 4 + codeLen + msgLen) throw malformed('ERROR text lengths disagree with the body');
      return {
        type: 'error',
        code: body.subarray(4, 4 + codeLen).toString('utf8'),
        message: body.subarray(4 + codeLen).toString('utf8'),
      };
    }
    default:
      throw new FtcpError(ErrorCode.UNKNOWN_TYPE, `unknown shim message type 0x${type.toString(16)}`);
  }
}

/**
 * Splits a byte stream into frames. The header is checked as soon as its 8
 * bytes are in, so garbage is refused at once rather than after waiting for a
 * body that never comes.
 */
export class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns every complete frame. Throws an {@link FtcpError} on a bad header. */
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    for (;;) {
      if (this.pending.length < NSW_HEADER_SIZE) break;
      const len = checkHeader(this.pending);
      if (this.pending.length < NSW_HEADER_SIZE + len) break;
      frames.push(this.pending.subarray(0, NSW_HEADER_SIZE + len));
      this.pending = this.pending.subarray(NSW_HEADER_SIZE + len);
    }
    return frames;
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get buffered(): number {
    return this.pending.length;
  }
}
