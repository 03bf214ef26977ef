/**
 * The stable buffer protocol, defined once: every message between a primary or
 * a backup and `ftcp buffer serve` is one ZeroMQ frame in this format.
 *
 * Frame layout (all integers little-endian; offsets are part of the protocol):
 *
 * | offset | size | field                                         |
 * |-------:|-----:|-----------------------------------------------|
 * |      0 |    1 | version ({@link PROTOCOL_VERSION})            |
 * |      1 |    1 | type ({@link MsgType})                        |
 * |      2 |    2 | flags, must be 0                              |
 * |      4 |    4 | request id, echoed by the reply               |
 * |      8 |    4 | body length, must equal frame length - 12     |
 * |     12 |    n | body, per type below                          |
 *
 * A MULTI frame (type 0x40) carries several whole frames, each prefixed by a
 * u32 length, in order; it is how a busy peer coalesces what it has queued into
 * one ZeroMQ message. MULTI frames do not nest.
 *
 * Records (what the log stores and a subscription streams) are the type byte
 * followed by the body of a write message, so a backup decodes them with the
 * same code as the buffer.
 */
import { ErrorCode, FtcpError } from '../errors.js';
import { Reader, Writer } from './codec.js';

/** Version byte of every frame; a frame with another version is refused. */
export const PROTOCOL_VERSION = 2;
/** Size of the fixed frame header. */
export const HEADER_SIZE = 12;
/** Largest frame the buffer accepts: a 64 KiB GSO segment with room to spare. */
export const MAX_FRAME_SIZE = 4 * 1024 * 1024;

/** Type tags. Requests are below 0x80, replies and pushes at 0x80 and above. */
export const MsgType = {
  HELLO: 0x01,
  PROMOTE: 0x02,
  PING: 0x03,
  CONN: 0x10,
  SEGMENT: 0x11,
  CALL: 0x12,
  CLIENT_ACK: 0x13,
  CLOSE: 0x14,
  CALL_BATCH: 0x15,
  SUBSCRIBE: 0x20,
  CONSUMED: 0x21,
  READ_CALLS: 0x22,
  READ_INSTREAM: 0x23,
  STATUS: 0x24,
  REPORT: 0x25,
  MULTI: 0x40,
  HELLO_OK: 0x81,
  PROMOTED: 0x82,
  PONG: 0x83,
  ACK_CONN: 0x90,
  ACK_SEGMENT: 0x91,
  ACK_CALL: 0x92,
  ACK_CLIENT: 0x93,
  ACK_CLOSE: 0x94,
  SUBSCRIBED: 0xa0,
  RECORDS: 0xa1,
  CALLS: 0xa2,
  INSTREAM: 0xa3,
  STATUS_REPLY: 0xa4,
  FAILED: 0xa5,
  EPOCH: 0xa6,
  ERROR: 0xff,
} as const;

/**
 * Role a peer declares in its hello. A HEARTBEAT is a second connection of
 * the epoch's owner that only answers probes (see heartbeat.ts).
 */
export const Role = { WRITER: 1, READER: 2, HEARTBEAT: 3 } as const;
/** How a subscribing backup follows the log; decides what retention may collect. */
export const BackupMode = { OBSERVER: 0, HOT: 1, COLD: 2 } as const;
/** TCP flags carried with a logged client segment. */
export const SegFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;
/** Why a connection record was closed. */
export const CloseReason = { FIN: 1, RST: 2, LOCAL: 3, TIMEOUT: 4 } as const;

/** A replicated TCP connection as the client sees it, fixed at the handshake (FT-TCP 3.3). */
export interface ConnRecord {
  kind: 'conn';
  epoch: number;
  /** Chosen by the writer, unique within the buffer; the id every later record names. */
  connId: number;
  /** IPv4 addresses as host-order u32. */
  clientIp: number;
  serverIp: number;
  clientPort: number;
  serverPort: number;
  clientIsn: number;
  serverIsn: number;
  mss: number;
  /** Window scale shifts (RFC 7323 2.2); 0 when not negotiated. */
  clientWscale: number;
  serverWscale: number;
  sackOk: boolean;
  timestamps: boolean;
  /** TSval of the client's SYN and of our SYN-ACK (0 when timestamps are off). */
  clientTsval: number;
  serverTsval: number;
}

/** Client bytes (and FIN/RST) at a 64-bit offset of the connection's instream. */
export interface SegmentRecord {
  kind: 'segment';
  epoch: number;
  connId: number;
  /** Offset of the first byte; offset 0 is the byte at clientIsn + 1. */
  offset: number;
  /** {@link SegFlag} bits; a FIN occupies one offset after the payload. */
  flags: number;
  payload: Buffer;
}

/** One call result of a logical stream (a process or thread) of the server. */
export interface CallRecord {
  kind: 'call';
  epoch: number;
  stream: string;
  /** 1-based, contiguous per stream. */
  callNo: number;
  data: Buffer;
}

/**
 * Consecutive calls of one stream in one record: a busy server makes far more
 * calls than the buffer could take one record at a time.
 */
export interface CallBatchRecord {
  kind: 'call-batch';
  epoch: number;
  stream: string;
  /** Call number of `datas[0]`; the rest follow in order. */
  firstCallNo: number;
  datas: Buffer[];
}

/** High-water marks of what the client acknowledged of our outstream and its window. */
export interface ClientAckRecord {
  kind: 'client-ack';
  epoch: number;
  connId: number;
  /** Offset of the outstream the client acknowledged up to (exclusive). */
  ackOffset: number;
  /** Client's advertised window in bytes (already scaled). */
  window: number;
  /**
   * Highest TSecr the client echoed (0 without timestamps): the newest TSval
   * of ours it had seen. A rebuilt socket must not send a TSval behind it,
   * or the client's PAWS check (RFC 7323 5) drops every segment.
   */
  tsEcr: number;
}

/** The connection is over; its records may be collected once every backup consumed them. */
export interface CloseRecord {
  kind: 'close';
  epoch: number;
  connId: number;
  reason: number;
}

/** Anything the log holds. */
export type LogRecord = ConnRecord | SegmentRecord | CallRecord | CallBatchRecord | ClientAckRecord | CloseRecord;

/** Where every stream and connection stood, as sent with a failure event and a promotion. */
export interface Positions {
  /** The next LSN the log will assign: every record below it is in the log. */
  headLsn: number;
  streams: { stream: string; lastCallNo: number }[];
  conns: { connId: number; stableOffset: number; closed: boolean }[];
}

/** Every message of the protocol. Records double as write requests. */
export type Message =
  | LogRecord
  | { kind: 'hello'; epoch: number; role: number; node: string }
  /** Takes the epoch after `epoch`, only while `epoch` is still the current one. */
  | { kind: 'promote'; epoch: number; node: string }
  | { kind: 'ping' }
  | { kind: 'subscribe'; fromLsn: number; window: number; mode: number; node: string }
  | { kind: 'consumed'; lsn: number }
  | { kind: 'read-calls'; stream: string; fromCallNo: number; max: number }
  | { kind: 'read-instream'; connId: number; offset: number; length: number }
  | { kind: 'status' }
  | { kind: 'report'; node: string; role: string; json: string }
  | { kind: 'hello-ok'; epoch: number; headLsn: number }
  | { kind: 'promoted'; epoch: number; positions: Positions }
  | { kind: 'pong' }
  | { kind: 'ack-conn'; connId: number }
  | { kind: 'ack-segment'; connId: number; stableOffset: number; stableSeq: number }
  | { kind: 'ack-call'; stream: string; contiguous: number }
  | { kind: 'ack-client'; connId: number }
  | { kind: 'ack-close'; connId: number }
  | { kind: 'subscribed'; firstLsn: number; headLsn: number }
  | { kind: 'records'; entries: { lsn: number; record: Buffer }[] }
  | { kind: 'calls'; stream: string; entries: { callNo: number; data: Buffer }[] }
  | { kind: 'instream'; connId: number; offset: number; data: Buffer }
  | { kind: 'status-reply'; json: string }
  | { kind: 'failed'; epoch: number; node: string; positions: Positions }
  | { kind: 'epoch'; epoch: number; node: string }
  | { kind: 'error'; code: string; message: string };

/** The kind tag of a message. */
export type MessageKind = Message['kind'];
/** The message of a given kind. */
export type MessageOf<K extends MessageKind> = Extract<Message, { kind: K }>;

/** A decoded frame. */
export interface Frame {
  reqId: number;
  msg: Message;
}

const CONN_OPT_SACK = 0x01;
const CONN_OPT_TS = 0x02;

type Body<K extends MessageKind> = {
  type: number;
  write(w: Writer, m: MessageOf<K>): void;
  read(r: Reader): MessageOf<K>;
};

function writePositions(w: Writer, p: Positions): void {
  w.u64(p.headLsn).u32(p.streams.length);
  for (const s of p.streams) w.name(s.stream).u64(s.lastCallNo);
  w.u32(p.conns.length);
  for (const c of p.conns) w.u64(c.connId).u64(c.stableOffset).u8(c.closed ? 1 : 0);
}

function readPositions(r: Reader): Positions {
  const headLsn = r.u64('head lsn');
  const ns = r.u32('stream count');
  // Each entry takes at least 10 bytes: refuse counts the frame cannot hold before allocating.
  if (ns * 10 > r.remaining) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `stream count ${ns} exceeds frame`);
  const streams = [];
  for (let i = 0; i < ns; i++) streams.push({ stream: r.name('stream'), lastCallNo: r.u64('last call') });
  const nc = r.u32('conn count');
  if (nc * 17 > r.remaining) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `conn count ${nc} exceeds frame`);
  const conns = [];
  for (let i = 0; i < nc; i++) {
    conns.push({ connId: r.u64('conn id'), stableOffset: r.u64('stable offset'), closed: r.u8('closed') !== 0 });
  }
  return { headLsn, streams, conns };
}

const bodies: { [K in MessageKind]: Body<K> } = {
  hello: {
    type: MsgType.HELLO,
    write: (w, m) => w.u64(m.epoch).u8(m.role).name(m.node),
    read: (r) => {
      const epoch = r.u64('epoch');
      const role = r.u8('role');
      if (role !== Role.WRITER && role !== Role.READER && role !== Role.HEARTBEAT) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `unknown role ${role}`);
      return { kind: 'hello', epoch, role, node: r.name('node id') };
    },
  },
  promote: { type: MsgType.PROMOTE, write: (w, m) => w.u64(m.epoch).name(m.node), read: (r) => ({ kind: 'promote', epoch: r.u64('epoch'), node: r.name('node id') }) },
  ping: { type: MsgType.PING, write: () => {}, read: () => ({ kind: 'ping' }) },
  conn: {
    type: MsgType.CONN,
    write: (w, m) =>
      w
        .u64(m.epoch)
        .u64(m.connId)
        .u32(m.clientIp)
        .u32(m.serverIp)
        .u16(m.clientPort)
        .u16(m.serverPort)
        .u32(m.clientIsn)
        .u32(m.serverIsn)
        .u16(m.mss)
        .u8(m.clientWscale)
        .u8(m.serverWscale)
        .u8((m.sackOk ? CONN_OPT_SACK : 0) | (m.timestamps ? CONN_OPT_TS : 0))
        .u8(0)
        .u16(0)
        .u32(m.clientTsval)
        .u32(m.serverTsval),
    read: (r) => {
      const m: ConnRecord = {
        kind: 'conn',
        epoch: r.u64('epoch'),
        connId: r.u64('conn id'),
        clientIp: r.u32('client ip'),
        serverIp: r.u32('server ip'),
        clientPort: r.u16('client port'),
        serverPort: r.u16('server port'),
        clientIsn: r.u32('client isn'),
        serverIsn: r.u32('server isn'),
        mss: r.u16('mss'),
        clientWscale: r.u8('client wscale'),
        serverWscale: r.u8('server wscale'),
        sackOk: false,
        timestamps: false,
        clientTsval: 0,
        serverTsval: 0,
      };
      const opts = r.u8('options');
      r.u8('pad');
      r.u16('pad');
      m.sackOk = (opts & CONN_OPT_SACK) !== 0;
      m.timestamps = (opts & CONN_OPT_TS) !== 0;
      m.clientTsval = r.u32('client tsval');
      m.serverTsval = r.u32('server tsval');
      // RFC 7323 2.3: a shift above 14 is invalid on the wire, so it is in a record too.
      if (m.clientWscale > 14 || m.serverWscale > 14) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'window scale above 14');
      return m;
    },
  },
  segment: {
    type: MsgType.SEGMENT,
    write: (w, m) => w.u64(m.epoch).u64(m.connId).u64(m.offset).u8(m.flags).u8(0).u16(0).bytes(m.payload),
    read: (r) => {
      const epoch = r.u64('epoch');
      const connId = r.u64('conn id');
      const offset = r.u64('offset');
      const flags = r.u8('flags');
      r.u8('pad');
      r.u16('pad');
      return { kind: 'segment', epoch, connId, offset, flags, payload: r.rest() };
    },
  },
  call: {
    type: MsgType.CALL,
    write: (w, m) => w.u64(m.epoch).u64(m.callNo).name(m.stream).bytes(m.data),
    read: (r) => {
      const epoch = r.u64('epoch');
      const callNo = r.u64('call number');
      if (callNo === 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'call numbers start at 1');
      return { kind: 'call', epoch, callNo, stream: r.name('stream'), data: r.rest() };
    },
  },
  'call-batch': {
    type: MsgType.CALL_BATCH,
    write: (w, m) => {
      w.u64(m.epoch).u64(m.firstCallNo).u32(m.datas.length).name(m.stream);
      for (const d of m.datas) w.u32(d.length).bytes(d);
    },
    read: (r) => {
      const epoch = r.u64('epoch');
      const firstCallNo = r.u64('first call number');
      if (firstCallNo === 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'call numbers start at 1');
      const count = r.u32('call count');
      if (count === 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'a call batch holds at least one call');
      const stream = r.name('stream');
      if (count * 4 > r.remaining) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `call count ${count} exceeds frame`);
      const datas: Buffer[] = [];
      for (let i = 0; i < count; i++) datas.push(r.bytes(r.u32('call length'), 'call data'));
      return { kind: 'call-batch', epoch, firstCallNo, stream, datas };
    },
  },
  'client-ack': {
    type: MsgType.CLIENT_ACK,
    write: (w, m) => w.u64(m.epoch).u64(m.connId).u64(m.ackOffset).u32(m.window).u32(m.tsEcr),
    read: (r) => ({ kind: 'client-ack', epoch: r.u64('epoch'), connId: r.u64('conn id'), ackOffset: r.u64('ack offset'), window: r.u32('window'), tsEcr: r.u32('tsecr') }),
  },
  close: {
    type: MsgType.CLOSE,
    write: (w, m) => w.u64(m.epoch).u64(m.connId).u8(m.reason),
    read: (r) => ({ kind: 'close', epoch: r.u64('epoch'), connId: r.u64('conn id'), reason: r.u8('reason') }),
  },
  subscribe: {
    type: MsgType.SUBSCRIBE,
    write: (w, m) => w.u64(m.fromLsn).u32(m.window).u8(m.mode).name(m.node),
    read: (r) => {
      const fromLsn = r.u64('from lsn');
      const window = r.u32('window');
      const mode = r.u8('mode');
      if (mode > BackupMode.COLD) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `unknown backup mode ${mode}`);
      if (window === 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'subscription window must be at least 1');
      return { kind: 'subscribe', fromLsn, window, mode, node: r.name('node id') };
    },
  },
  consumed: { type: MsgType.CONSUMED, write: (w, m) => w.u64(m.lsn), read: (r) => ({ kind: 'consumed', lsn: r.u64('lsn') }) },
  'read-calls': {
    type: MsgType.READ_CALLS,
    write: (w, m) => w.u64(m.fromCallNo).u32(m.max).name(m.stream),
    read: (r) => ({ kind: 'read-calls', fromCallNo: r.u64('from call'), max: r.u32('max'), stream: r.name('stream') }),
  },
  'read-instream': {
    type: MsgType.READ_INSTREAM,
    write: (w, m) => w.u64(m.connId).u64(m.offset).u32(m.length),
    read: (r) => ({ kind: 'read-instream', connId: r.u64('conn id'), offset: r.u64('offset'), length: r.u32('length') }),
  },
  status: { type: MsgType.STATUS, write: () => {}, read: () => ({ kind: 'status' }) },
  report: {
    type: MsgType.REPORT,
    write: (w, m) => w.name(m.node).name(m.role).bytes(Buffer.from(m.json, 'utf8')),
    read: (r) => ({ kind: 'report', node: r.name('node id'), role: r.name('role'), json: r.rest().toString('utf8') }),
  },
  'hello-ok': {
    type: MsgType.HELLO_OK,
    write: (w, m) => w.u64(m.epoch).u64(m.headLsn),
    read: (r) => ({ kind: 'hello-ok', epoch: r.u64('epoch'), headLsn: r.u64('head lsn') }),
  },
  promoted: {
    type: MsgType.PROMOTED,
    write: (w, m) => {
      w.u64(m.epoch);
      writePositions(w, m.positions);
    },
    read: (r) => ({ kind: 'promoted', epoch: r.u64('epoch'), positions: readPositions(r) }),
  },
  pong: { type: MsgType.PONG, write: () => {}, read: () => ({ kind: 'pong' }) },
  'ack-conn': { type: MsgType.ACK_CONN, write: (w, m) => w.u64(m.connId), read: (r) => ({ kind: 'ack-conn', connId: r.u64('conn id') }) },
  'ack-segment': {
    type: MsgType.ACK_SEGMENT,
    write: (w, m) => w.u64(m.connId).u64(m.stableOffset).u32(m.stableSeq),
    read: (r) => ({ kind: 'ack-segment', connId: r.u64('conn id'), stableOffset: r.u64('stable offset'), stableSeq: r.u32('stable seq') }),
  },
  'ack-call': {
    type: MsgType.ACK_CALL,
    write: (w, m) => w.u64(m.contiguous).name(m.stream),
    read: (r) => ({ kind: 'ack-call', contiguous: r.u64('contiguous'), stream: r.name('stream') }),
  },
  'ack-client': { type: MsgType.ACK_CLIENT, write: (w, m) => w.u64(m.connId), read: (r) => ({ kind: 'ack-client', connId: r.u64('conn id') }) },
  'ack-close': { type: MsgType.ACK_CLOSE, write: (w, m) => w.u64(m.connId), read: (r) => ({ kind: 'ack-close', connId: r.u64('conn id') }) },
  subscribed: {
    type: MsgType.SUBSCRIBED,
    write: (w, m) => w.u64(m.firstLsn).u64(m.headLsn),
    read: (r) => ({ kind: 'subscribed', firstLsn: r.u64('first lsn'), headLsn: r.u64('head lsn') }),
  },
  records: {
    type: MsgType.RECORDS,
    write: (w, m) => {
      w.u32(m.entries.length);
      for (const e of m.entries) w.u64(e.lsn).u32(e.record.length).bytes(e.record);
    },
    read: (r) => {
      const n = r.u32('record count');
      if (n * 12 > r.remaining) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `record count ${n} exceeds frame`);
      const entries = [];
      for (let i = 0; i < n; i++) {
        const lsn = r.u64('lsn');
        entries.push({ lsn, record: r.bytes(r.u32('record length'), 'record') });
      }
      return { kind: 'records', entries };
    },
  },
  calls: {
    type: MsgType.CALLS,
    write: (w, m) => {
      w.name(m.stream).u32(m.entries.length);
      for (const e of m.entries) w.u64(e.callNo).u32(e.data.length).bytes(e.data);
    },
    read: (r) => {
      const stream = r.name('stream');
      const n = r.u32('call count');
      if (n * 12 > r.remaining) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `call count ${n} exceeds frame`);
      const entries = [];
      for (let i = 0; i < n; i++) {
        const callNo = r.u64('call number');
        entries.push({ callNo, data: r.bytes(r.u32('call length'), 'call data') });
      }
      return { kind: 'calls', stream, entries };
    },
  },
  instream: {
    type: MsgType.INSTREAM,
    write: (w, m) => w.u64(m.connId).u64(m.offset).bytes(m.data),
    read: (r) => ({ kind: 'instream', connId: r.u64('conn id'), offset: r.u64('offset'), data: r.rest() }),
  },
  'status-reply': {
    type: MsgType.STATUS_REPLY,
    write: (w, m) => w.bytes(Buffer.from(m.json, 'utf8')),
    read: (r) => ({ kind: 'status-reply', json: r.rest().toString('utf8') }),
  },
  failed: {
    type: MsgType.FAILED,
    write: (w, m) => {
      w.u64(m.epoch).name(m.node);
      writePositions(w, m.positions);
    },
    read: (r) => ({ kind: 'failed', epoch: r.u64('epoch'), node: r.name('node id'), positions: readPositions(r) }),
  },
  epoch: {
    type: MsgType.EPOCH,
    write: (w, m) => w.u64(m.epoch).name(m.node),
    read: (r) => ({ kind: 'epoch', epoch: r.u64('epoch'), node: r.name('node id') }),
  },
  error: {
    type: MsgType.ERROR,
    write: (w, m) => {
      const msg = Buffer.from(m.message, 'utf8').subarray(0, 0xffff);
      w.name(m.code).u16(msg.length).bytes(msg);
    },
    read: (r) => {
      const code = r.name('error code');
      return { kind: 'error', code, message: r.bytes(r.u16('message length'), 'message').toString('utf8') };
    },
  },
};

const byType = new Map<number, Body<MessageKind>>();
for (const b of Object.values(bodies)) byType.set(b.type, b as Body<MessageKind>);

/** Record kinds: the write messages a log stores. */
const RECORD_KINDS = new Set<MessageKind>(['conn', 'segment', 'call', 'call-batch', 'client-ack', 'close']);

function writeBody(w: Writer, msg: Message): void {
  const body = bodies[msg.kind] as Body<MessageKind>;
  body.write(w, msg);
}

/** Encodes one message as a frame. */
export function encodeFrame(msg: Message, reqId = 0): Buffer {
  const size = HEADER_SIZE + 64 + (msg.kind === 'segment' ? msg.payload.length : 0) + (msg.kind === 'call-batch' ? msg.datas.reduce((n, d) => n + 4 + d.length, 0) : 0);
  const w = new Writer(size);
  w.u8(PROTOCOL_VERSION).u8(bodies[msg.kind].type).u16(0).u32(reqId).u32(0);
  writeBody(w, msg);
  w.patchU32(8, w.length - HEADER_SIZE);
  return w.finish();
}

/**
 * Reads just the request id of a frame, so an error reply can name the request
 * even when the rest of the frame is unreadable. 0 when the frame is too short.
 */
export function peekReqId(frame: Buffer): number {
  return frame.length >= 8 ? frame.readUInt32LE(4) : 0;
}

/** Decodes a frame; throws {@link FtcpError} with a specific code for anything wrong. */
export function decodeFrame(frame: Buffer): Frame {
  if (frame.length > MAX_FRAME_SIZE) {
    throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `frame of ${frame.length} bytes exceeds ${MAX_FRAME_SIZE}`);
  }
  if (frame.length < HEADER_SIZE) {
    throw new FtcpError(ErrorCode.TRUNCATED_FRAME, `frame of ${frame.length} bytes is shorter than the ${HEADER_SIZE}-byte header`);
  }
  const version = frame.readUInt8(0);
  if (version !== PROTOCOL_VERSION) {
    throw new FtcpError(ErrorCode.BAD_VERSION, `protocol version ${version}, this buffer speaks ${PROTOCOL_VERSION}`);
  }
  const type = frame.readUInt8(1);
  const body = byType.get(type);
  if (!body) throw new FtcpError(ErrorCode.UNKNOWN_TYPE, `unknown message type 0x${type.toString(16)}`);
  if (frame.readUInt16LE(2) !== 0) throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'reserved flags are not zero');
  const reqId = frame.readUInt32LE(4);
  const bodyLen = frame.readUInt32LE(8);
  if (bodyLen !== frame.length - HEADER_SIZE) {
    const code = bodyLen > frame.length - HEADER_SIZE ? ErrorCode.TRUNCATED_FRAME : ErrorCode.MALFORMED_FRAME;
    throw new FtcpError(code, `body length field says ${bodyLen}, frame carries ${frame.length - HEADER_SIZE}`);
  }
  const r = new Reader(frame, HEADER_SIZE);
  const msg = body.read(r);
  r.end(msg.kind);
  return { reqId, msg };
}

/** Encodes a record as the log stores it: its type byte, then its body. */
export function encodeRecord(rec: LogRecord): Buffer {
  const w = new Writer(64 + (rec.kind === 'segment' ? rec.payload.length : 0));
  w.u8(bodies[rec.kind].type);
  writeBody(w, rec);
  return w.finish();
}

/** Decodes a stored or streamed record. */
export function decodeRecord(buf: Buffer): LogRecord {
  if (buf.length < 1) throw new FtcpError(ErrorCode.TRUNCATED_FRAME, 'empty record');
  const body = byType.get(buf.readUInt8(0));
  if (!body) throw new FtcpError(ErrorCode.UNKNOWN_TYPE, `unknown record type 0x${buf.readUInt8(0).toString(16)}`);
  const r = new Reader(buf, 1);
  const msg = body.read(r);
  if (!RECORD_KINDS.has(msg.kind)) throw new FtcpError(ErrorCode.UNKNOWN_TYPE, `${msg.kind} is not a record`);
  r.end(msg.kind);
  return msg as LogRecord;
}

/** True for the message kinds the log stores. */
export function isRecord(msg: Message): msg is LogRecord {
  return RECORD_KINDS.has(msg.kind);
}

/** Packs whole frames into one MULTI frame, in order. */
export function encodeMulti(frames: readonly Buffer[]): Buffer {
  let size = HEADER_SIZE;
  for (const f of frames) size += 4 + f.length;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt8(PROTOCOL_VERSION, 0);
  out.writeUInt8(MsgType.MULTI, 1);
  out.writeUInt16LE(0, 2);
  out.writeUInt32LE(0, 4);
  out.writeUInt32LE(size - HEADER_SIZE, 8);
  let at = HEADER_SIZE;
  for (const f of frames) {
    out.writeUInt32LE(f.length, at);
    f.copy(out, at + 4);
    at += 4 + f.length;
  }
  return out;
}

/**
 * The frames one ZeroMQ message carries: itself, or the contents of a MULTI
 * frame. Checks the MULTI framing only; each inner frame is decoded on its own.
 */
export function splitFrames(frame: Buffer): Buffer[] {
  if (frame.length < HEADER_SIZE || frame.readUInt8(1) !== MsgType.MULTI || frame.readUInt8(0) !== PROTOCOL_VERSION) return [frame];
  if (frame.length > MAX_FRAME_SIZE) throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `frame of ${frame.length} bytes exceeds ${MAX_FRAME_SIZE}`);
  if (frame.readUInt32LE(8) !== frame.length - HEADER_SIZE) {
    throw new FtcpError(ErrorCode.MALFORMED_FRAME, 'MULTI frame body length does not match the frame');
  }
  const out: Buffer[] = [];
  const r = new Reader(frame, HEADER_SIZE);
  while (r.remaining > 0) {
    // A nested MULTI is left to decodeFrame, which refuses it as an unknown
    // type: one bad inner frame costs only its own error reply.
    out.push(r.bytes(r.u32('inner frame length'), 'inner frame'));
  }
  return out;
}

/**
 * The log encoding of the record a write frame carries, without copying: the
 * record is the type byte then the body, and the frame's body is already
 * there, so the type is written just before it, over the top byte of the
 * body-length field (zero for every frame below 16 MiB). Mutates `frame`,
 * which must have decoded as a record.
 */
export function recordBytesOfFrame(frame: Buffer): Buffer {
  if (frame.length > 0xffffff || frame.readUInt8(11) !== 0) return encodeRecord(decodeFrame(frame).msg as LogRecord);
  frame.writeUInt8(frame.readUInt8(1), HEADER_SIZE - 1);
  return frame.subarray(HEADER_SIZE - 1);
}
