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
 * Call body (CALL, PLAY, RESULT, DONE): call number u64 @0, kind u16 @8,
 * flags u16 @10, errno i32 @12, result i64 @16, arg u64 @24, payload length
 * u32 @32, payload @36. The bytes from the kind on are the record the stable
 * buffer keeps for (stream, call number): FT-TCP 3.4's "system call record"
 * (the call, its selecting argument, its result). A payload is at most
 * {@link MAX_PAYLOAD} bytes, except the RESULT of a RECV and the DONE of a
 * SEND: the bytes of one replicated read or write, up to {@link MAX_IO}.
 *
 * DONE (shim to agent, playback) reports what the shim then did for real
 * after a RESULT: the bytes a SEND moved (hashed, kept in the send buffer),
 * or a LOCK call's outcome (compared; with {@link CallFlag.TRY} the outcome
 * of the attempt that opens a contended blocking call, answered by a second
 * RESULT when its grant position is due). Otherwise unanswered, but for an
 * ERROR when it differs from the record.
 *
 * Promotion (DESIGN "Failover", step 4), one connection at a time:
 * - ADOPT, shim to agent, 16 bytes: fd i32 @0, reserved u32 @4 (0), key u64 @8.
 * - REBUILD, agent to shim: local IPv4 @0 and peer IPv4 @4 (4 bytes each,
 *   network order), local port u16 @8, peer port u16 @10, snd_una u32 @12,
 *   rcv_nxt u32 @16, mss u16 @20, snd_wscale u8 @22, rcv_wscale u8 @23,
 *   sack_ok u8 @24, timestamps u8 @25, reserved u16 @26 (0), ts_val u32 @28,
 *   peer window u32 @32, our window u32 @36, inq length u32 @40, outq length
 *   u32 @44, inq bytes @48, then outq bytes. The one message whose body may
 *   exceed {@link MAX_FRAME}: up to {@link MAX_REBUILD_BODY}.
 * - ADOPTED, shim to agent: fd i32 @0, new fd i32 @4 (-1 when not rebuilt),
 *   key u64 @8, errno i32 @16, step u16 @20 ({@link AdoptStep}), step name
 *   length u16 @22 (at most 64), step name @24.
 * An ERROR that answers ADOPT refuses that one rebuild; the connection stays.
 *
 * Playback from a queue (version 3): a PLAY with {@link CallFlag.FETCH}
 * (the shim's queue is empty) is answered with RECORDS: first call number
 * u64 @0, count u32 @8, reserved u32 @12 (0), then `count` records (the call
 * body from the kind on, flags 0 or {@link CallFlag.SYNC}); a RECV record
 * not marked SYNC carries the client's bytes after its key. At most
 * {@link MAX_BATCH} bytes. The shim answers calls from them and says how far
 * in PLAYED: consumed u64 @0, peeked u64 @8 (0 or consumed + 1).
 */
import { ErrorCode, FtcpError } from './errors.js';
import { MAX_REBUILD_QUEUE, checkRebuildPlan, type TcpRebuildState } from './rebuild.js';

/** Version byte of every frame; must equal `FTCP_NSW_PROTO_VERSION` in the C header. */
export const NSW_PROTOCOL_VERSION = 3;
/** Size of the fixed frame header. */
export const NSW_HEADER_SIZE = 8;
/** Fixed part of a call body, before the payload. */
export const CALL_FIXED_SIZE = 36;
/** Largest payload of one call (random bytes, a clock value, a hash): of every record, and of every body but the two below. */
export const MAX_PAYLOAD = 4096;
/**
 * Largest number of bytes one call on a replicated connection moves, in both
 * modes, and so the largest payload of the RESULT of a RECV (the client's
 * bytes) and of the DONE of a SEND (the replica's bytes). Mirrors
 * `FTCP_NSW_MAX_IO`.
 */
export const MAX_IO = 64 * 1024 * 1024;
/** Largest body of a RESULT or DONE frame: a call body carrying {@link MAX_IO} bytes. */
export const MAX_IO_BODY = CALL_FIXED_SIZE + MAX_IO;
/** Largest stream name in a HELLO. */
export const MAX_NAME = 255;
/** Largest frame either side may send, REBUILD and the I/O bodies ({@link MAX_IO_BODY}) excepted. */
export const MAX_FRAME = NSW_HEADER_SIZE + CALL_FIXED_SIZE + MAX_PAYLOAD;
/** Fixed part of a REBUILD body, before the two queues. */
export const REBUILD_FIXED_SIZE = 48;
/** Largest REBUILD body: the fixed part and two queues of {@link MAX_REBUILD_QUEUE} bytes. */
export const MAX_REBUILD_BODY = REBUILD_FIXED_SIZE + 2 * MAX_REBUILD_QUEUE;
/** Fixed part of an ADOPTED body, before the step name. */
export const ADOPTED_FIXED_SIZE = 24;
/** Longest step name in an ADOPTED. */
export const MAX_STEP_NAME = 64;
/** Largest RECORDS body: the shim's queue of a stream's next records. Mirrors `FTCP_NSW_MAX_BATCH`. */
export const MAX_BATCH = 1024 * 1024;
/** Fixed part of a RECORDS body, before the records. */
export const RECORDS_FIXED_SIZE = 16;
/** Fixed part of a record (the call body from the kind on), before the payload. */
export const RECORD_FIXED_SIZE = 28;
/** Largest payload of a record in RECORDS (a RECV's key and the client's bytes). */
export const MAX_BATCH_PAYLOAD = MAX_BATCH - RECORDS_FIXED_SIZE - RECORD_FIXED_SIZE;
/** Size of a PLAYED body. */
export const PLAYED_SIZE = 16;
/** Size of the connection key that begins the payload of RECV and SEND records (and the PLAY of either). */
export const CONN_KEY_SIZE = 8;

/** Message type tags. Shim to agent below 0x80, agent to shim at 0x80 and above. */
export const NswMsgType = {
  HELLO: 0x01,
  CALL: 0x02,
  WAIT: 0x03,
  PLAY: 0x04,
  ADOPT: 0x05,
  ADOPTED: 0x06,
  DONE: 0x07,
  PLAYED: 0x08,
  STABLE: 0x81,
  RESULT: 0x82,
  REBUILD: 0x83,
  RECORDS: 0x84,
  ERROR: 0xff,
} as const;

/**
 * The step an ADOPTED names. 0 is success; 1..99 are the TCP_REPAIR steps of
 * `enum ftcp_repair_step` (socket, TCP_REPAIR on, ..., TCP_REPAIR off); the
 * rest are the shim's own. Mirrors `FTCP_NSW_ADOPT_STEP_*`.
 */
export const AdoptStep = {
  NONE: 0,
  /** The agent answered ADOPT with ERROR. */
  AGENT: 100,
  /** The shim had no memory for the REBUILD body. */
  MEMORY: 101,
  /** Putting the socket at the descriptor number, or giving it the placeholder's flags. */
  PLACE: 102,
  /** Registering the socket again in an epoll set the placeholder was in. */
  EPOLL: 103,
  /** Writing the unacknowledged outstream. */
  OUTQ: 104,
  /** Setting again, on the rebuilt socket, the options the program set on the placeholder. */
  OPTIONS: 105,
  /** Shutting down again, on the rebuilt socket, what the program shut down on the placeholder. */
  SHUTDOWN: 106,
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
  /**
   * DONE of a LOCK only: the outcome of the non-blocking attempt that opens a
   * blocking lock call the primary found contended. The agent answers with a
   * second RESULT when the call's grant position is due (FT-TCP 3.8).
   */
  TRY: 0x0004,
  /**
   * PLAY of a CLOCK_GETTIME only: a read that may be only the deadline of the
   * timed wait after it (README "Deadline reads"). The shim answers it from
   * its queue without consuming the record, and only ever sends it with
   * {@link FETCH}.
   */
  TENTATIVE: 0x0008,
  /**
   * PLAY only: the shim's queue holds no record of this call. Answered with
   * RECORDS from this call on (or RESULT with {@link LIVE}); nothing is
   * compared: the shim checks the call against the record itself.
   */
  FETCH: 0x0020,
  /**
   * A record in RECORDS only: the shim plays this call with the agent (PLAY,
   * RESULT, DONE as without a queue): a lock's turn in the primary's order,
   * or a read whose client bytes are not in the batch.
   */
  SYNC: 0x0040,
  /**
   * DONE of a SEND only: the shim hashed the bytes and found the record's
   * hash, so the agent does not hash them again (FNV-1a is byte-serial and
   * would cost the agent more than the rest of a bulk roll-forward). Without
   * it the agent hashes and compares.
   */
  CHECKED: 0x0080,
} as const;

/**
 * The arg of a CLOCK_GETTIME record with no payload that says the thread's
 * clock read before it, recorded by another thread's output commit, was only
 * the deadline of a timed wait (README "Deadline reads"). Mirrors
 * `FTCP_NSW_CLOCK_DEADLINE`.
 */
export const CLOCK_DEADLINE_MARK = 1n << 40n;

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
  SPAWN: 20,
  /** setsockopt and getsockopt of a replicated connection; arg: see {@link sockoptArg}. */
  SOCKOPT: 21,
  /** shutdown of a replicated connection; arg: how. */
  SHUTDOWN: 22,
  /** FIONREAD, SIOCOUTQ and SIOCOUTQNSD of a replicated connection; arg: the request; payload: the i32 answer. */
  IOCTL: 23,
  /** clock(): the process's CPU time. */
  CLOCK: 24,
  /** getrusage; arg: who; payload: struct rusage. */
  GETRUSAGE: 25,
  /** times; payload: struct tms. */
  TIMES: 26,
  /** uname; payload: struct utsname (the host's name differs between primary and backup). */
  UNAME: 27,
  /** gethostname; arg: length asked; payload: the name. */
  GETHOSTNAME: 28,
  /** The thread (or, at exit, the process) ends: its stream has no call after this one. */
  END: 29,
} as const;

/** The argument of an END: the process ended (recorded by the thread that ended it), not only a thread. */
export const END_PROCESS = 1n;

/**
 * Bit of a SELECT record's arg: select was given a timeout, and the record's
 * payload begins with the struct timeval (16 bytes) select left in it (Linux
 * writes the time it did not sleep there; programs read it).
 */
export const SELECT_TIMEOUT = 1n << 32n;

/** Bit of a SOCKOPT record's arg that marks a getsockopt. */
export const SOCKOPT_GET = 1n << 48n;

/** The arg of a SOCKOPT record: option name in bits 0..31, level in bits 32..47, {@link SOCKOPT_GET} for getsockopt. */
export function sockoptArg(level: number, name: number, get: boolean): bigint {
  return BigInt(name >>> 0) | (BigInt(level & 0xffff) << 32n) | (get ? SOCKOPT_GET : 0n);
}

/** Largest payload of a call body in a frame of `type` (a {@link NswMsgType}) for a call of `kind`. */
export function maxPayload(type: number, kind: number): number {
  if (type === NswMsgType.RESULT && kind === CallKind.RECV) return MAX_IO;
  if (type === NswMsgType.DONE && kind === CallKind.SEND) return MAX_IO;
  return MAX_PAYLOAD;
}

/** Size of a LOCK record's payload. */
export const LOCK_PAYLOAD_SIZE = 24;

/**
 * Where a lock call stands in the primary's order of lock operations
 * (FT-TCP 3.8): a LOCK record's payload, `FTCP_NSW_LOCK_*` in the header.
 */
export interface LockPosition {
  /** The order the positions belong to: one per image's process tree (a hash of its root stream name). */
  domain: bigint;
  /** Position of the call, or of the non-blocking attempt that opened a blocking one; from 1. */
  attempt: number;
  /** Position of the blocking acquisition that followed a contended attempt; 0 when the attempt decided the call. */
  grant: number;
}

/** Encodes a LOCK record's payload. */
export function encodeLockPosition(p: LockPosition): Buffer {
  const b = Buffer.alloc(LOCK_PAYLOAD_SIZE);
  b.writeBigUInt64LE(BigInt.asUintN(64, p.domain), 0);
  b.writeBigUInt64LE(BigInt(p.attempt), 8);
  b.writeBigUInt64LE(BigInt(p.grant), 16);
  return b;
}

/**
 * Decodes a LOCK record's payload. Throws an {@link FtcpError}
 * (MALFORMED_FRAME) unless it is 24 bytes with an attempt from 1 and a grant
 * of 0 or past the attempt.
 */
export function decodeLockPosition(payload: Buffer): LockPosition {
  if (payload.length !== LOCK_PAYLOAD_SIZE) throw malformed(`lock position of ${payload.length} bytes, not ${LOCK_PAYLOAD_SIZE}`);
  const attempt = payload.readBigUInt64LE(8);
  const grant = payload.readBigUInt64LE(16);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (attempt === 0n || attempt > max || grant > max || (grant !== 0n && grant <= attempt)) {
    throw malformed(`lock positions ${attempt} and ${grant} are out of order`);
  }
  return { domain: payload.readBigUInt64LE(0), attempt: Number(attempt), grant: Number(grant) };
}

/**
 * The short hash of sent bytes a SEND record carries (FT-TCP 3.4: "a short
 * hash of the message ... as a safety check against divergence"): 64-bit
 * FNV-1a, the same as `ftcp_nsw_hash` in the C header. Computed in two
 * 32-bit halves (the prime is 2^40 + 435), so a replicated write of
 * {@link MAX_IO} bytes costs a fraction of a second, not a BigInt per byte.
 */
export function sendHash(bytes: Uint8Array): bigint {
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]!) >>> 0;
    // h * (2^40 + 435): lo * 435 fits a double exactly (< 2^41); h << 40 adds lo << 8 to the high half.
    const t = lo * 435;
    hi = (Math.imul(hi, 435) + Math.floor(t / 0x100000000) + (lo << 8)) >>> 0;
    lo = t >>> 0;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
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
  | { type: 'done'; call: CallBody }
  | { type: 'error'; code: string; message: string }
  | { type: 'adopt'; fd: number; key: bigint }
  | { type: 'rebuild'; state: TcpRebuildState; inq: Buffer; outq: Buffer }
  | { type: 'adopted'; fd: number; newFd: number; key: bigint; errno: number; step: number; stepName: string }
  | { type: 'played'; consumed: number; peeked: number }
  | { type: 'records'; first: number; records: CallData[] };

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
  return encodeCallDataUpTo(c, MAX_PAYLOAD);
}

/** {@link encodeCallData} with `limit` as the largest payload allowed. */
export function encodeCallDataUpTo(c: CallData, limit: number): Buffer {
  if (c.payload.length > limit) throw malformed(`payload of ${c.payload.length} bytes exceeds ${limit}`);
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
  return decodeCallDataUpTo(buf, MAX_PAYLOAD);
}

/**
 * {@link decodeCallData} with the payload a view of `buf`, not a copy: for
 * the agent's read-ahead, which keeps the record's bytes anyway.
 */
export function recordView(buf: Buffer): CallData {
  return decodeCallDataUpTo(buf, MAX_PAYLOAD, false);
}

/** {@link decodeCallData} with `limit` as the largest payload allowed, or a function of the kind; the payload a copy unless `copy` is false. */
function decodeCallDataUpTo(buf: Buffer, limit: number | ((kind: number) => number), copy = true): CallData {
  const fixed = CALL_FIXED_SIZE - 8;
  if (buf.length < fixed) throw truncated('call record', fixed, buf.length);
  const plen = buf.readUInt32LE(24);
  const max = typeof limit === 'number' ? limit : limit(buf.readUInt16LE(0));
  if (plen > max) throw malformed(`payload length ${plen} exceeds ${max}`);
  if (plen !== buf.length - fixed) throw malformed(`payload length ${plen} disagrees with ${buf.length - fixed} bytes present`);
  return {
    kind: buf.readUInt16LE(0),
    flags: buf.readUInt16LE(2),
    errno: buf.readInt32LE(4),
    result: buf.readBigInt64LE(8),
    arg: buf.readBigUInt64LE(16),
    payload: copy ? Buffer.from(buf.subarray(fixed)) : buf.subarray(fixed),
  };
}

function encodeCallBody(type: number, c: CallBody): Buffer {
  if (!Number.isSafeInteger(c.callNo) || c.callNo < 1) throw malformed(`call number ${c.callNo} is out of range`);
  const data = encodeCallDataUpTo(c, maxPayload(type, c.kind));
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
    case 'done':
      return encodeCallBody(NswMsgType.DONE, msg.call);
    case 'wait':
    case 'stable': {
      const buf = header(msg.type === 'wait' ? NswMsgType.WAIT : NswMsgType.STABLE, 8);
      buf.writeBigUInt64LE(BigInt(msg.callNo), NSW_HEADER_SIZE);
      return buf;
    }
    case 'adopt': {
      const buf = header(NswMsgType.ADOPT, 16);
      buf.writeInt32LE(msg.fd, 8);
      buf.writeUInt32LE(0, 12);
      buf.writeBigUInt64LE(msg.key, 16);
      return buf;
    }
    case 'rebuild': {
      checkRebuildPlan(msg);
      const s = msg.state;
      const buf = header(NswMsgType.REBUILD, REBUILD_FIXED_SIZE + msg.inq.length + msg.outq.length);
      const b = NSW_HEADER_SIZE;
      Buffer.from(s.localAddress.split('.').map(Number)).copy(buf, b + 0);
      Buffer.from(s.peerAddress.split('.').map(Number)).copy(buf, b + 4);
      buf.writeUInt16LE(s.localPort, b + 8);
      buf.writeUInt16LE(s.peerPort, b + 10);
      buf.writeUInt32LE(s.sndUna, b + 12);
      buf.writeUInt32LE(s.rcvNxt, b + 16);
      buf.writeUInt16LE(s.mss, b + 20);
      buf.writeUInt8(s.sndWscale, b + 22);
      buf.writeUInt8(s.rcvWscale, b + 23);
      buf.writeUInt8(s.sackOk ? 1 : 0, b + 24);
      buf.writeUInt8(s.timestamps ? 1 : 0, b + 25);
      buf.writeUInt16LE(0, b + 26);
      buf.writeUInt32LE(s.tsVal, b + 28);
      buf.writeUInt32LE(s.peerWindow, b + 32);
      buf.writeUInt32LE(s.ourWindow, b + 36);
      buf.writeUInt32LE(msg.inq.length, b + 40);
      buf.writeUInt32LE(msg.outq.length, b + 44);
      msg.inq.copy(buf, b + REBUILD_FIXED_SIZE);
      msg.outq.copy(buf, b + REBUILD_FIXED_SIZE + msg.inq.length);
      return buf;
    }
    case 'adopted': {
      const name = Buffer.from(msg.stepName, 'utf8');
      if (name.length > MAX_STEP_NAME) throw malformed(`step name of ${name.length} bytes exceeds ${MAX_STEP_NAME}`);
      const buf = header(NswMsgType.ADOPTED, ADOPTED_FIXED_SIZE + name.length);
      buf.writeInt32LE(msg.fd, 8);
      buf.writeInt32LE(msg.newFd, 12);
      buf.writeBigUInt64LE(msg.key, 16);
      buf.writeInt32LE(msg.errno, 24);
      buf.writeUInt16LE(msg.step, 28);
      buf.writeUInt16LE(name.length, 30);
      name.copy(buf, 32);
      return buf;
    }
    case 'played': {
      const buf = header(NswMsgType.PLAYED, PLAYED_SIZE);
      buf.writeBigUInt64LE(BigInt(msg.consumed), NSW_HEADER_SIZE);
      buf.writeBigUInt64LE(BigInt(msg.peeked), NSW_HEADER_SIZE + 8);
      return buf;
    }
    case 'records':
      return encodeRecords(msg.first, msg.records.map((r) => encodeCallDataUpTo(r, MAX_BATCH_PAYLOAD)));
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
 * Largest body a frame of `type` may have: REBUILD carries two queues, RESULT
 * and DONE may carry the bytes of a replicated read or write (their kind then
 * decides, {@link maxPayload}), everything else fits {@link MAX_FRAME}.
 */
export function bodyLimit(type: number): number {
  if (type === NswMsgType.REBUILD) return MAX_REBUILD_BODY;
  if (type === NswMsgType.RECORDS) return MAX_BATCH;
  if (type === NswMsgType.RESULT || type === NswMsgType.DONE) return MAX_IO_BODY;
  return MAX_FRAME - NSW_HEADER_SIZE;
}

/**
 * Checks a frame header and returns its body length. Throws an
 * {@link FtcpError}: TRUNCATED_FRAME when fewer than 8 bytes, BAD_VERSION,
 * MALFORMED_FRAME for non-zero flags, OVERSIZED_FRAME past its type's
 * {@link bodyLimit} or past `maxBody` (a number, or a function of the type)
 * when given. The header is read at `at` of `buf`.
 */
export function checkHeader(buf: Buffer, maxBody?: number | ((type: number) => number), at = 0): number {
  if (buf.length - at < NSW_HEADER_SIZE) throw truncated('frame header', NSW_HEADER_SIZE, buf.length - at);
  const version = buf.readUInt8(at);
  if (version !== NSW_PROTOCOL_VERSION) {
    throw new FtcpError(ErrorCode.BAD_VERSION, `shim protocol version ${version}, expected ${NSW_PROTOCOL_VERSION}`);
  }
  if (buf.readUInt16LE(at + 2) !== 0) throw malformed('reserved header flags are not zero');
  const len = buf.readUInt32LE(at + 4);
  const type = buf.readUInt8(at + 1);
  const cap = typeof maxBody === 'function' ? maxBody(type) : maxBody;
  const limit = Math.min(bodyLimit(type), cap ?? Infinity);
  if (len > limit) throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `body of ${len} bytes exceeds ${limit}`);
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
    case NswMsgType.RESULT:
    case NswMsgType.DONE: {
      if (body.length < CALL_FIXED_SIZE) throw truncated('call body', CALL_FIXED_SIZE, body.length);
      const call: CallBody = { callNo: readCallNo(body, 0), ...decodeCallDataUpTo(body.subarray(8), (kind) => maxPayload(type, kind)) };
      return { type: type === NswMsgType.CALL ? 'call' : type === NswMsgType.PLAY ? 'play' : type === NswMsgType.RESULT ? 'result' : 'done', call };
    }
    case NswMsgType.WAIT:
    case NswMsgType.STABLE: {
      if (body.length !== 8) throw body.length < 8 ? truncated('call number', 8, body.length) : malformed('trailing bytes after call number');
      // STABLE 0 is legal: nothing of the stream is stable yet.
      const v = body.readBigUInt64LE(0);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`call number ${v} is out of range`);
      return { type: type === NswMsgType.WAIT ? 'wait' : 'stable', callNo: Number(v) };
    }
    case NswMsgType.ADOPT: {
      if (body.length !== 16) throw body.length < 16 ? truncated('ADOPT', 16, body.length) : malformed('trailing bytes after ADOPT');
      if (body.readUInt32LE(4) !== 0) throw malformed('ADOPT reserved field is not zero');
      return { type: 'adopt', fd: body.readInt32LE(0), key: body.readBigUInt64LE(8) };
    }
    case NswMsgType.REBUILD: {
      if (body.length < REBUILD_FIXED_SIZE) throw truncated('REBUILD', REBUILD_FIXED_SIZE, body.length);
      const inqLen = body.readUInt32LE(40);
      const outqLen = body.readUInt32LE(44);
      if (inqLen > MAX_REBUILD_QUEUE || outqLen > MAX_REBUILD_QUEUE) throw malformed(`REBUILD queues of ${inqLen} and ${outqLen} bytes exceed ${MAX_REBUILD_QUEUE}`);
      if (body.length !== REBUILD_FIXED_SIZE + inqLen + outqLen) throw malformed('REBUILD queue lengths disagree with the body');
      if (body.readUInt16LE(26) !== 0) throw malformed('REBUILD reserved field is not zero');
      const flag = (off: number, name: string): boolean => {
        const v = body.readUInt8(off);
        if (v > 1) throw malformed(`REBUILD ${name} is ${v}, not 0 or 1`);
        return v === 1;
      };
      const state: TcpRebuildState = {
        localAddress: [...body.subarray(0, 4)].join('.'),
        localPort: body.readUInt16LE(8),
        peerAddress: [...body.subarray(4, 8)].join('.'),
        peerPort: body.readUInt16LE(10),
        sndUna: body.readUInt32LE(12),
        rcvNxt: body.readUInt32LE(16),
        mss: body.readUInt16LE(20),
        sndWscale: body.readUInt8(22),
        rcvWscale: body.readUInt8(23),
        sackOk: flag(24, 'sack_ok'),
        timestamps: flag(25, 'timestamps'),
        tsVal: body.readUInt32LE(28),
        peerWindow: body.readUInt32LE(32),
        ourWindow: body.readUInt32LE(36),
      };
      const inq = Buffer.from(body.subarray(REBUILD_FIXED_SIZE, REBUILD_FIXED_SIZE + inqLen));
      const outq = Buffer.from(body.subarray(REBUILD_FIXED_SIZE + inqLen));
      return { type: 'rebuild', state, inq, outq };
    }
    case NswMsgType.ADOPTED: {
      if (body.length < ADOPTED_FIXED_SIZE) throw truncated('ADOPTED', ADOPTED_FIXED_SIZE, body.length);
      const nameLen = body.readUInt16LE(22);
      if (nameLen > MAX_STEP_NAME) throw malformed(`step name length ${nameLen} exceeds ${MAX_STEP_NAME}`);
      if (body.length !== ADOPTED_FIXED_SIZE + nameLen) throw malformed(`ADOPTED name length ${nameLen} disagrees with ${body.length - ADOPTED_FIXED_SIZE} bytes present`);
      return {
        type: 'adopted',
        fd: body.readInt32LE(0),
        newFd: body.readInt32LE(4),
        key: body.readBigUInt64LE(8),
        errno: body.readInt32LE(16),
        step: body.readUInt16LE(20),
        stepName: body.subarray(ADOPTED_FIXED_SIZE).toString('utf8'),
      };
    }
    case NswMsgType.PLAYED: {
      if (body.length !== PLAYED_SIZE) throw body.length < PLAYED_SIZE ? truncated('PLAYED', PLAYED_SIZE, body.length) : malformed('trailing bytes after PLAYED');
      const consumed = body.readBigUInt64LE(0);
      const peeked = body.readBigUInt64LE(8);
      if (consumed > BigInt(Number.MAX_SAFE_INTEGER - 1)) throw malformed(`call number ${consumed} is out of range`);
      if (peeked !== 0n && peeked !== consumed + 1n) throw malformed(`PLAYED peeked ${peeked} is not 0 or ${consumed + 1n}`);
      return { type: 'played', consumed: Number(consumed), peeked: Number(peeked) };
    }
    case NswMsgType.RECORDS: {
      if (body.length < RECORDS_FIXED_SIZE) throw truncated('RECORDS', RECORDS_FIXED_SIZE, body.length);
      const first = readCallNo(body, 0);
      const count = body.readUInt32LE(8);
      if (count === 0) throw malformed('RECORDS without a record');
      if (body.readUInt32LE(12) !== 0) throw malformed('RECORDS reserved field is not zero');
      const records: CallData[] = [];
      let at = RECORDS_FIXED_SIZE;
      for (let i = 0; i < count; i++) {
        if (body.length - at < RECORD_FIXED_SIZE) throw truncated(`record ${i} of RECORDS`, RECORD_FIXED_SIZE, body.length - at);
        const end = at + RECORD_FIXED_SIZE + body.readUInt32LE(at + 24);
        if (end > body.length) throw truncated(`record ${i} of RECORDS`, end - at, body.length - at);
        const rec = decodeCallDataUpTo(body.subarray(at, end), MAX_BATCH_PAYLOAD);
        if ((rec.flags & ~CallFlag.SYNC) !== 0) throw malformed(`record ${i} of RECORDS has flags 0x${rec.flags.toString(16)}`);
        records.push(rec);
        at = end;
      }
      if (at !== body.length) throw malformed(`${body.length - at} trailing bytes after the records`);
      if (first + count - 1 > Number.MAX_SAFE_INTEGER) throw malformed('RECORDS call numbers out of range');
      return { type: 'records', first, records };
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
 * A RECORDS frame of records already encoded (each {@link encodeCallData}'s
 * bytes, flags and a RECV's bytes included): the agent's playback path, one
 * copy. Throws an {@link FtcpError} past {@link MAX_BATCH}.
 */
export function encodeRecords(first: number, records: Buffer[]): Buffer {
  let size = 0;
  for (const r of records) size += r.length;
  const buf = recordsFrame(first, records.length, size);
  let at = NSW_HEADER_SIZE + RECORDS_FIXED_SIZE;
  for (const r of records) at += r.copy(buf, at);
  return buf;
}

/**
 * A RECORDS frame of `count` records taking `size` bytes, header and fixed
 * part written, the records' bytes left for the caller to write from
 * `NSW_HEADER_SIZE + RECORDS_FIXED_SIZE` on (not zeroed: the agent fills
 * all of it), in `into` when it is large enough. Throws an
 * {@link FtcpError} past {@link MAX_BATCH}.
 */
export function recordsFrame(first: number, count: number, size: number, into?: Buffer): Buffer {
  if (!Number.isSafeInteger(first) || first < 1) throw malformed(`call number ${first} is out of range`);
  if (count === 0) throw malformed('RECORDS without a record');
  const body = RECORDS_FIXED_SIZE + size;
  if (body > MAX_BATCH) throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `RECORDS body of ${body} bytes exceeds ${MAX_BATCH}`);
  const buf = into && into.length >= NSW_HEADER_SIZE + body ? into.subarray(0, NSW_HEADER_SIZE + body) : Buffer.allocUnsafe(NSW_HEADER_SIZE + body);
  buf.writeUInt8(NSW_PROTOCOL_VERSION, 0);
  buf.writeUInt8(NswMsgType.RECORDS, 1);
  buf.writeUInt16LE(0, 2);
  buf.writeUInt32LE(body, 4);
  buf.writeBigUInt64LE(BigInt(first), NSW_HEADER_SIZE);
  buf.writeUInt32LE(count, NSW_HEADER_SIZE + 8);
  buf.writeUInt32LE(0, NSW_HEADER_SIZE + 12);
  return buf;
}

/**
 * The call a DONE frame carries, for the agent's playback path: what
 * {@link decodeMessage} gives, after the same checks, but with the payload
 * (a replica's written bytes, up to {@link MAX_IO}) a view of the frame,
 * not a copy. Throws an {@link FtcpError} on bad input.
 */
export function doneOf(frame: Buffer): CallBody {
  const len = checkHeader(frame);
  if (frame.readUInt8(1) !== NswMsgType.DONE) throw malformed(`frame type 0x${frame.readUInt8(1).toString(16)} is not DONE`);
  if (frame.length !== NSW_HEADER_SIZE + len) throw malformed('DONE frame length disagrees with its header');
  const body = frame.subarray(NSW_HEADER_SIZE);
  if (body.length < CALL_FIXED_SIZE) throw truncated('call body', CALL_FIXED_SIZE, body.length);
  const kind = body.readUInt16LE(8);
  const plen = body.readUInt32LE(32);
  const max = maxPayload(NswMsgType.DONE, kind);
  if (plen > max) throw malformed(`payload length ${plen} exceeds ${max}`);
  if (plen !== body.length - CALL_FIXED_SIZE) throw malformed(`payload length ${plen} disagrees with ${body.length - CALL_FIXED_SIZE} bytes present`);
  return {
    callNo: readCallNo(body, 0),
    kind,
    flags: body.readUInt16LE(10),
    errno: body.readInt32LE(12),
    result: body.readBigInt64LE(16),
    arg: body.readBigUInt64LE(24),
    payload: body.subarray(CALL_FIXED_SIZE),
  };
}

/**
 * The record a CALL frame carries, for the agent's hot path: the frame's bytes
 * from the kind on (exactly {@link encodeCallData} of the decoded call) and
 * its call number, after the checks {@link decodeMessage} makes of a CALL
 * (its header already checked, as {@link FrameSplitter} does), without
 * decoding the fields. Throws an {@link FtcpError} on bad input, and when
 * the flags are not 0 (a record has none).
 */
export function callRecordOf(frame: Buffer): { callNo: number; data: Buffer } {
  const body = frame.length - NSW_HEADER_SIZE;
  if (body < CALL_FIXED_SIZE) throw truncated('call body', CALL_FIXED_SIZE, body);
  const plen = frame.readUInt32LE(NSW_HEADER_SIZE + 32);
  if (plen > MAX_PAYLOAD) throw malformed(`payload length ${plen} exceeds ${MAX_PAYLOAD}`);
  if (plen !== body - CALL_FIXED_SIZE) throw malformed(`payload length ${plen} disagrees with ${body - CALL_FIXED_SIZE} bytes present`);
  const lo = frame.readUInt32LE(NSW_HEADER_SIZE);
  const hi = frame.readUInt32LE(NSW_HEADER_SIZE + 4);
  if ((lo === 0 && hi === 0) || hi > 0x1fffff) throw malformed(`call number ${(BigInt(hi) << 32n) | BigInt(lo)} is out of range`);
  const flags = frame.readUInt16LE(NSW_HEADER_SIZE + 10);
  if (flags !== 0) throw malformed(`CALL with flags 0x${flags.toString(16)}`);
  return { callNo: hi * 0x100000000 + lo, data: frame.subarray(NSW_HEADER_SIZE + 8) };
}

/**
 * Splits a byte stream into frames. The header is checked as soon as its 8
 * bytes are in, so garbage is refused at once rather than after waiting for a
 * body that never comes. Chunks are kept as they come and joined once per
 * frame, so a REBUILD of many megabytes costs one copy, not one per chunk.
 */
export class FrameSplitter {
  private chunks: Buffer[] = [];
  /**
   * Bytes of `chunks[0]` already taken. Frames are cut from a chunk at an
   * offset: a view of the rest per frame (a record is some 50 bytes) was a
   * good part of the agent's allocations.
   */
  private at = 0;
  /** Bytes buffered and not taken. */
  private size = 0;
  /** Length of the frame at the front, header included, once its header is in; -1 before. */
  private need = -1;
  private readonly maxBody: number | ((type: number) => number) | undefined;

  /**
   * `maxBody` caps a frame's body below its type's own limit (a number, or a
   * function of the type): the agent lets only a DONE carry replicated bytes
   * and caps everything else at {@link MAX_FRAME} minus the header, so a bad
   * shim cannot make it buffer a REBUILD-sized body.
   */
  constructor(options: { maxBody?: number | ((type: number) => number) } = {}) {
    this.maxBody = options.maxBody;
  }

  /** Adds bytes; returns every complete frame. Throws an {@link FtcpError} on a bad header. */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.size < NSW_HEADER_SIZE) break;
        if (this.chunks[0]!.length - this.at < NSW_HEADER_SIZE) {
          this.chunks[0] = this.chunks[0]!.subarray(this.at);
          this.chunks = [Buffer.concat(this.chunks)];
          this.at = 0;
        }
        this.need = NSW_HEADER_SIZE + checkHeader(this.chunks[0]!, this.maxBody, this.at);
      }
      if (this.size < this.need) break;
      frames.push(this.take(this.need));
      this.need = -1;
    }
    return frames;
  }

  /** Removes and returns the first n buffered bytes (n <= size). */
  private take(n: number): Buffer {
    this.size -= n;
    const first = this.chunks[0]!;
    if (first.length - this.at >= n) {
      const out = first.subarray(this.at, this.at + n);
      this.advance(first, n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let k = 0;
    while (k < n) {
      const c = this.chunks[0]!;
      const m = Math.min(c.length - this.at, n - k);
      c.copy(out, k, this.at, this.at + m);
      k += m;
      this.advance(c, m);
    }
    return out;
  }

  /** Marks `m` more bytes of `chunks[0]` (`c`) taken, dropping it once all are. */
  private advance(c: Buffer, m: number): void {
    this.at += m;
    if (this.at === c.length) {
      this.chunks.shift();
      this.at = 0;
    }
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get buffered(): number {
    return this.size;
  }
}
