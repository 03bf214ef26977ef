/**
 * The NSW agent: serves the shims of one server on a unix socket. In record
 * mode (the primary) it appends each call record to a {@link RecordSink} and
 * answers WAIT once a stream's records are stable (FT-TCP 3.4, output
 * commit). In playback mode (a replica) it reads each stream's records
 * ahead and sends them to the shim in batches (RECORDS), which answers the
 * calls from them and checks each as the agent would; the calls that must
 * synchronize (a lock's turn, a read whose bytes are not in a batch, a call
 * that does not match its record) come back as a PLAY, answered with the
 * primary's record, waiting for it if the replica is ahead, or reported as a
 * divergence (FT-TCP 3.7; DESIGN invariant 5).
 *
 * One connection per stream (a thread of a process), opened by the shim on
 * the stream's first wrapped call and begun with HELLO. Bad input on one
 * connection gets an ERROR with a code and closes that connection only
 * (DESIGN invariant 6): the agent keeps serving every other shim.
 */
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Logger } from '@ftcp/stable-buffer';
import { ErrorCode, FtcpError, NswErrorCode, isFtcpError } from './errors.js';
import {
  AdoptStep,
  CONN_KEY_SIZE,
  CallFlag,
  CallKind,
  END_PROCESS,
  FrameSplitter,
  MAX_BATCH,
  MAX_BATCH_PAYLOAD,
  MAX_FRAME,
  MAX_IO_BODY,
  MAX_PAYLOAD,
  NSW_HEADER_SIZE,
  RECORDS_FIXED_SIZE,
  RECORD_FIXED_SIZE,
  NswMsgType,
  SOCKOPT_GET,
  ShimMode,
  callKindName,
  callRecordOf,
  decodeCallData,
  decodeLockPosition,
  sendHash,
  decodeMessage,
  encodeCallData,
  doneOf,
  encodeMessage,
  recordView,
  recordsFrame,
  type CallBody,
  type CallData,
  type LockPosition,
  type NswMessage,
} from './protocol.js';
import { LockOrder } from './lock-order.js';
import type { RecordSink, RecordSource } from './sink.js';
import { ConnectionState, decodeSockaddr, type InstreamSource, type PeerAddress, type ReplicatedConnection } from './connections.js';
import { checkRebuildPlan, type RebuildReport, type RebuildSource } from './rebuild.js';

/** What the agent is for: the primary records, a replica plays back. */
export type AgentMode = 'record' | 'playback';

/** Options of {@link NswAgent}. */
export interface NswAgentOptions {
  /** Path of the unix socket the shims connect to (their `FTCP_NSW_SOCKET`). A stale file is replaced. */
  socketPath: string;
  mode: AgentMode;
  /** Where records go; required in record mode. */
  sink?: RecordSink;
  /** Where records come from; required in playback mode. */
  source?: RecordSource;
  /** Playback: where the client bytes of replicated connections come from (needed once a replica reads one). */
  instream?: InstreamSource;
  /**
   * Playback: the plans that rebuild a promoted replica's connections as real
   * sockets when it goes live (DESIGN "Failover", step 4). Without one every
   * ADOPT is refused and the replica's replicated descriptors read EOF.
   */
  rebuild?: RebuildSource;
  /**
   * Longest wait, in ms, of an ADOPT for the other streams of its process to
   * consume their records (default 10 000). Past it that rebuild is refused
   * with FTCP_ERR_TIMEOUT rather than risk giving the client's bytes twice.
   */
  adoptWaitMs?: number;
  /** Structured logs; silent by default. */
  logger?: Logger;
}

/** A replica call that does not match the primary's record. */
export interface Divergence {
  stream: string;
  callNo: number;
  /** The primary's record. */
  primary: CallData;
  /** What the replica asked for (its kind) or, for compared calls, what it got. */
  replica: CallData;
  /** One line for people; branch on the fields, not on this. */
  reason: string;
}

/** Counters an operator asks about during an incident. */
export interface AgentCounters {
  /** Connections that completed a HELLO. */
  streams: number;
  /** Connections open now. */
  open: number;
  /** Records appended (record mode). */
  recorded: number;
  /** Records played back (playback mode): consumed by the replica, from its queue or with a PLAY. */
  played: number;
  /** Batches of records sent to replicas (RECORDS, playback mode): `played / batches` is the records answered per round trip. */
  batches: number;
  /** Records appended but not yet stable. */
  unstable: number;
  /** Connections closed for bad input, by error code. */
  badInput: Record<string, number>;
  divergences: number;
  /** Streams that went live after a promotion. */
  wentLive: number;
  /** Records the sink refused: their streams were closed (DESIGN invariant 4). */
  sinkFailures: number;
  /** Replicated connections a promoted replica rebuilt as real sockets. */
  rebuilt: number;
  /** Replicated connections whose rebuild failed or was refused (each also a `'rebuilt'` event with `ok: false`). */
  rebuildFailed: number;
}

interface StreamState {
  /** Last call number received on this stream (CALL or PLAY). */
  last: number;
  /** Highest call number such that it and all before it are stable. */
  stable: number;
  /** Stable call numbers above `stable` (appends may complete out of order). */
  ahead: Set<number>;
  /** The sink's promise for the last calls appended, while it is pending (see {@link Appending}). */
  appending: Appending | null;
  /** WAITs not yet answered, in call order; `since` is when each came (performance.now()). */
  waits: { callNo: number; since: number; reply: () => void }[];
  /** A connection speaks for this stream now. */
  connected: boolean;
  /** Playback only: the stream went live and its calls are recorded now. */
  recording: boolean;
  /** Real pid of the process, from its HELLO. */
  pid: number;
  /**
   * Playback: last call number fully consumed: its RESULT sent (instream
   * bytes included) and, for a call that owes a DONE, that DONE received.
   */
  answered: number;
  /** Playback: the DONE the shim owes for the call the last RESULT answered, if any. */
  owed: OwedDone | null;
  /** Playback: the stream waits for its turn in the primary's lock order. */
  lockWait: boolean;
  /**
   * Playback: the call after `last` when the shim answered it, a clock read
   * (README "Deadline reads"), from its record without consuming it (PLAYED);
   * 0 otherwise. A stream whose last record is such a read has consumed its
   * records, as far as going live is concerned.
   */
  peeked: number;
  /** Playback: records sent to the shim (RECORDS) and not consumed yet, in call order from `last` + 1. */
  pushed: Ahead[];
  /** Index of the first record of `pushed` not consumed (no O(n) shift per record). */
  pushedHead: number;
  /** Playback: the records read ahead of the shim, once the stream played its first call. */
  reader: ReadAhead | null;
}

/**
 * Calls `from`..`to` of a stream, for which the sink returned one and the
 * same promise: a sink that sends calls in batches (CallWriter) shares a
 * batch's promise, so the agent waits on it once, not once per call.
 */
interface Appending {
  promise: Promise<void>;
  from: number;
  to: number;
}

/**
 * A record the agent read ahead of a replica's stream (README "Playback
 * from a queue"). Records are read in call order, each once, as the shim
 * would have asked for them.
 */
interface Ahead {
  callNo: number;
  /** The record as the source gave it. */
  raw: Buffer;
  /** Bytes it takes in a RECORDS batch (see {@link writeAhead}). */
  size: number;
  /** Decoded for the kinds the agent acts on (ACCEPT, RECV, SEND, LOCK); null for the others. */
  rec: CallData | null;
  /** RECV: the connection and the client's bytes the primary's call read, fetched in order. */
  connection?: ConnectionState;
  bytes?: Buffer;
  /** Played with the agent (PLAY): a lock's turn, a read whose bytes do not come in the batch, a record that is not well formed. */
  sync: boolean;
  /** Not well formed: the batch carries an empty record of its kind, marked SYNC, and the PLAY reports it. */
  bad?: boolean;
}

/**
 * Writes what a RECORDS batch carries for `a` at `at` of `buf`: the record,
 * marked SYNC when the shim must play it with the agent, and a read's
 * client bytes after its key (its payload length then counts them).
 * Returns the bytes written, `a.size`.
 */
function writeAhead(buf: Buffer, at: number, a: Ahead): number {
  if (a.bad) {
    buf.fill(0, at, at + RECORD_FIXED_SIZE);
    buf.writeUInt16LE(CallFlag.SYNC, at + 2);
    return RECORD_FIXED_SIZE;
  }
  // TypedArray#set: Buffer#copy validates its arguments and makes a view per call, which shows at a record per 4 kB.
  buf.set(a.raw, at);
  if (a.sync) {
    buf.writeUInt16LE(CallFlag.SYNC, at + 2);
    return a.raw.length;
  }
  if (!a.bytes) return a.raw.length;
  buf.set(a.bytes, at + a.raw.length);
  buf.writeUInt32LE(a.raw.length - RECORD_FIXED_SIZE + a.bytes.length, at + 24);
  return a.raw.length + a.bytes.length;
}

/** Reads a stream's records ahead of its shim, bounded; stopped by goLive past the log, a disconnect, or close. */
interface ReadAhead {
  /** Next call number to read from the source. */
  next: number;
  /** Read, not yet sent. */
  items: Ahead[];
  /** Bytes of `items` (records and client bytes). */
  bytes: number;
  stop: AbortController;
  signal: AbortSignal;
  /** Reading ended: past the log after goLive (then `error` is null), or for `error`. */
  ended: boolean;
  error: unknown;
  /** A PLAY waiting for the next record. */
  waiter: (() => void) | null;
  /** The reader waiting for room. */
  resume: (() => void) | null;
  /** Stopped because the primary's process ended while this thread was short of the next record (see cutOutlived). */
  outlived: boolean;
}

/**
 * How long after reading the primary's process END the agent still waits
 * for a record of another thread of that process. A process's exit kills
 * its other threads wherever they are, between two records or before
 * their own END; their records flushed at the exit arrive within
 * milliseconds. A replica thread that wants more than that waits for a
 * record that will never come, and may hold what its process needs to end
 * (CPython's GIL): it is told it diverged instead.
 */
const OUTLIVED_GRACE_MS = 1000;

/** A stream's end where a divergence report needs a call: no call at all (kind 0). */
const STREAM_ENDED: CallData = { kind: 0, flags: 0, errno: 0, result: 0n, arg: 0n, payload: Buffer.alloc(0) };

/** How far the agent reads ahead of a stream: records and bytes (a batch's worth and more). */
const AHEAD_RECORDS = 16384;
const AHEAD_BYTES = 2 * MAX_BATCH;

/** A call whose RESULT went out and whose DONE (what the shim then did for real) is due. */
interface OwedDone {
  callNo: number;
  kind: number;
  /** The primary's record of the call. */
  rec: CallData;
  /** SEND: the connection whose send buffer takes the bytes. */
  connection?: ConnectionState;
  /** LOCK: the record's positions, and which one the owed DONE reports. */
  lock?: LockPosition;
  stage?: 'attempt' | 'grant';
}

/** errno values of a lock attempt that found the lock held (EAGAIN, EACCES). */
const CONTENDED = new Set([osConstants.errno.EAGAIN, osConstants.errno.EACCES]);

/** After goLive, how long a lock domain with lost positions below a waiter stays idle before they are skipped, when no stream could still perform them. */
const LOCK_GAP_QUIET_MS = 50;

interface Conn {
  socket: Socket;
  splitter: FrameSplitter;
  stream: string | null;
  /** Frames not yet handled. They are handled one at a time, in order: a playback reply may wait. */
  queue: Buffer[];
  /** Index of the next frame in `queue` (no O(n) shift per frame on the record path). */
  head: number;
  /** A frame's handling is waiting (a playback read); later frames wait behind it. */
  waiting: boolean;
  abort: AbortController;
  closed: boolean;
  /**
   * Playback: the buffer the last RECORDS frame was built in, free again once
   * the socket wrote it (the shim asks for the next batch only after reading
   * that one): a fresh megabyte per batch costs more in page faults than
   * filling it.
   */
  batchBuf: Buffer | null;
  batchFree: boolean;
}

/** Default of {@link NswAgentOptions.adoptWaitMs}. */
const ADOPT_WAIT_MS = 10_000;

/**
 * The logical process a stream belongs to: its name without the trailing
 * `/t<k>` of threads. Names, not only HELLO pids, because a thread the
 * replica has not started yet (no HELLO) still has records to consume.
 */
function processOf(stream: string): string {
  return stream.replace(/(\/t\d+)+$/, '');
}

/** The connection key a RECV or SEND record (or PLAY) begins with; fewer bytes when it has none. */
function keyOf(payload: Buffer): Buffer {
  return payload.subarray(0, CONN_KEY_SIZE);
}

/** `EADDRINUSE (errno 98)` for people reading a failed rebuild. */
function errnoText(errno: number): string {
  const name = Object.entries(osConstants.errno).find(([, v]) => v === errno)?.[0];
  return `${name ?? 'errno'} (errno ${errno})`;
}

/**
 * Lock positions of one domain that a promoted replica skipped: their records
 * were lost with the primary (FT-TCP 3.8 order, README "File-lock order").
 */
export interface LockGap {
  domain: bigint;
  /** First and last position skipped. */
  from: number;
  to: number;
}

/**
 * Serves shims. Events: `'divergence'` ({@link Divergence}), `'bad-input'`
 * (an {@link FtcpError} and the stream name or null), `'hello'` (stream name),
 * `'rebuilt'` ({@link RebuildReport}, one per replicated connection a
 * promoted replica adopted, rebuilt or not), `'lock-gap'` ({@link LockGap},
 * lock positions lost with the primary that a promoted replica skipped).
 */
export class NswAgent extends EventEmitter {
  readonly counters: AgentCounters = {
    streams: 0, open: 0, recorded: 0, played: 0, batches: 0, unstable: 0, badInput: {}, divergences: 0, wentLive: 0, sinkFailures: 0, rebuilt: 0, rebuildFailed: 0,
  };
  private readonly server: Server;
  private readonly streams = new Map<string, StreamState>();
  private readonly conns = new Set<Conn>();
  private readonly logger: Logger | undefined;
  private diverged = false;
  /** Replica pids whose primary process ended: 'exited' when its END was read, 'cut' once the grace is over (see primaryExited). */
  private readonly exitedPrimaries = new Map<number, 'exited' | 'cut'>();
  private lastCallNos: ReadonlyMap<string, number> | null = null;
  private readonly connections = new Map<bigint, ConnectionState>();
  /** Every peer an accept was replayed for, as `address:port` (see {@link NswAgent.hasAccepted}). */
  private readonly acceptedPeers = new Set<string>();
  private liveSink: RecordSink | null = null;
  /** ADOPTs waiting for their process's streams to consume their records; each re-checks when called. */
  private readonly settleWaiters = new Set<() => void>();
  /** Connections a REBUILD was sent for, by key: who adopted it. A second adoption is refused. */
  private readonly adoptions = new Map<bigint, { stream: string; pid: number; fd: number }>();
  /** Why the agent refused an ADOPT, by stream and key, for the `'rebuilt'` report that follows. */
  private readonly refusals = new Map<string, string>();
  /** Playback: the primary's order of lock operations, as far as the replica performed it. */
  private readonly locks = new LockOrder();
  /** After goLive: looks for lock positions lost with the primary. */
  private gapTimer: NodeJS.Timeout | null = null;
  /** When goLive was called (performance.now()): a lock domain's idle time counts from there at most. */
  private liveAt = 0;
  /** Aborted by {@link close}: reads the agent started on its own behalf stop. */
  private readonly lifetime = new AbortController();
  /** The longest a WAIT was held, in ms, since {@link takeLongestStallMs} last read it. */
  private longestStallMs = 0;

  private readonly sink: RecordSink | undefined;
  private readonly source: RecordSource | undefined;

  /** Throws an {@link FtcpError} (BAD_CONFIG) when the mode's sink or source is missing. */
  constructor(readonly options: NswAgentOptions) {
    super();
    if (options.mode === 'record' && !options.sink) throw new FtcpError(ErrorCode.BAD_CONFIG, 'a record agent needs a sink');
    if (options.mode === 'playback' && !options.source) throw new FtcpError(ErrorCode.BAD_CONFIG, 'a playback agent needs a source');
    if (options.mode !== 'record' && options.mode !== 'playback') throw new FtcpError(ErrorCode.BAD_CONFIG, `unknown agent mode ${String(options.mode)}`);
    this.sink = options.sink;
    this.source = options.source;
    this.logger = options.logger;
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Starts listening; resolves when shims can connect. */
  async listen(): Promise<void> {
    rmSync(this.options.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new FtcpError(ErrorCode.LISTEN, `cannot listen on ${this.options.socketPath}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen(this.options.socketPath, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.logger?.log('info', 'nsw.listen', { socket: this.options.socketPath, mode: this.options.mode });
  }

  /** Stops listening, drops every shim connection and aborts waiting playback reads. */
  async close(): Promise<void> {
    this.lifetime.abort();
    if (this.gapTimer) clearInterval(this.gapTimer);
    for (const c of this.conns) this.drop(c);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.options.socketPath, { force: true });
  }

  /**
   * False once any replica call diverged: this replica must not take over
   * (FT-TCP 3.7; DESIGN invariant 5).
   */
  get canTakeOver(): boolean {
    return !this.diverged;
  }

  /** Highest call number of `stream` that is stable with everything before it; 0 if none. */
  stableCallNo(stream: string): number {
    return this.streams.get(stream)?.stable ?? 0;
  }

  /**
   * Output-commit stall (FT-TCP 3.4): how long, in ms, the oldest WAIT not
   * yet answered has been held, over every connected stream; 0 when no
   * thread waits. A WAIT is what the shim sends before a send, write or
   * sendfile on a replicated connection whose stream has records that are
   * not stable yet, and its thread is blocked until the answer, so this is
   * how long the server's oldest blocked output has been blocked (from
   * when the agent read the WAIT). Computed on demand: one look per stream.
   */
  oldestStallMs(now = performance.now()): number {
    let oldest = now;
    for (const s of this.streams.values()) {
      // Waits are in call order, so the first is the stream's oldest.
      const w = s.waits[0];
      if (w !== undefined && w.since < oldest) oldest = w.since;
    }
    return now - oldest;
  }

  /**
   * The longest output-commit stall, in ms, since the previous call: of the
   * WAITs answered meanwhile and of the one still held longest (see
   * {@link oldestStallMs}). Resets, so one reader (the node's periodic
   * report) should call it.
   */
  takeLongestStallMs(): number {
    const longest = Math.max(this.longestStallMs, this.oldestStallMs());
    this.longestStallMs = 0;
    return longest;
  }

  private accept(socket: Socket): void {
    const conn: Conn = {
      // Only a replica's DONE carries replicated bytes; every other shim frame fits a call: larger ones are refused at the header.
      socket, splitter: new FrameSplitter({ maxBody: (type) => (type === NswMsgType.DONE && this.options.mode === 'playback' ? MAX_IO_BODY : MAX_FRAME - NSW_HEADER_SIZE) }), stream: null, queue: [], head: 0, waiting: false, abort: new AbortController(), closed: false, batchBuf: null, batchFree: true,
    };
    this.conns.add(conn);
    this.counters.open++;
    socket.on('data', (chunk: Buffer) => {
      if (conn.closed) return;
      let frames: Buffer[];
      try {
        frames = conn.splitter.push(chunk);
      } catch (err) {
        this.refuse(conn, err);
        return;
      }
      for (const f of frames) conn.queue.push(f);
      this.pump(conn);
    });
    socket.on('error', () => this.drop(conn));
    socket.on('close', () => this.drop(conn));
  }

  /**
   * Handles queued frames in order. Records and WAITs are handled at once
   * (no promise per record: the record path is the hot one); a PLAY that
   * must wait for its record holds back the frames behind it.
   */
  private pump(conn: Conn): void {
    while (!conn.closed && !conn.waiting && conn.head < conn.queue.length) {
      const frame = conn.queue[conn.head++]!;
      if (conn.head === conn.queue.length) {
        conn.queue = [];
        conn.head = 0;
      }
      try {
        const pending = this.handle(conn, frame);
        if (pending) {
          conn.waiting = true;
          pending.then(
            () => {
              conn.waiting = false;
              this.pump(conn);
            },
            (err: unknown) => this.refuse(conn, err),
          );
        }
      } catch (err) {
        this.refuse(conn, err);
      }
    }
  }

  private drop(conn: Conn): void {
    if (conn.closed) return;
    const s = this.forget(conn);
    conn.socket.destroy();
    // Between calls (not killed inside one of ours): the thread or process ended by itself.
    if (s && this.options.mode === 'playback' && !s.recording && !conn.waiting && !s.owed) this.watchEnd(conn.stream!, s);
    this.poke();
  }

  /**
   * A replica's stream ended by itself after call `s.last`. If the primary's
   * stream goes on past it, the replica ended where the primary did not (a
   * call that failed only here, then an exit that looks clean): a
   * divergence, never a clean end (DESIGN invariant 5).
   */
  private watchEnd(name: string, s: StreamState): void {
    const next = Math.max(s.last, s.peeked) + 1;
    if (this.lastCallNos !== null && next > (this.lastCallNos.get(name) ?? 0)) return;
    // A record read ahead is not read again: a source gives each record once.
    const ahead = s.pushed[s.pushedHead] ?? s.reader?.items[0];
    const read = ahead?.callNo === next ? Promise.resolve(ahead.raw) : this.source!.read(name, next, this.lifetime.signal);
    read.then(
      (raw) => {
        // The stream came back (a new replica run under the same agent): its own calls decide. A process
        // stopped for a divergence already reported ends every stream of it: one report is the truth.
        if (s.connected || s.recording || s.last >= next || this.lifetime.signal.aborted || this.diverged) return;
        let rec: CallData;
        try {
          rec = decodeCallData(raw);
        } catch {
          return;
        }
        const reason = `the replica's stream ended after call ${next - 1}; the primary's went on with ${callKindName(rec.kind)}`;
        try {
          this.diverge(name, { ...STREAM_ENDED, callNo: next }, rec, reason);
        } catch {
          // diverge() throws for the handler of a live call; here nobody is waiting for an answer.
        }
      },
      () => {},
    );
  }

  private send(conn: Conn, msg: NswMessage): void {
    if (!conn.closed) conn.socket.write(encodeMessage(msg));
  }

  /**
   * Bad input, a divergence or a failed sink (`fromSink`): an ERROR with its
   * code, then this connection (only) is closed.
   */
  private refuse(conn: Conn, err: unknown, fromSink = false): void {
    if (conn.closed) return;
    if (isFtcpError(err, ErrorCode.CLOSED) && conn.abort.signal.aborted) return;
    const e = isFtcpError(err) ? err : new FtcpError(ErrorCode.INTERNAL, String(err), { cause: err });
    if (fromSink) {
      this.counters.sinkFailures++;
    } else if (e.code !== NswErrorCode.DIVERGENCE) {
      this.counters.badInput[e.code] = (this.counters.badInput[e.code] ?? 0) + 1;
      this.logger?.log('warn', 'nsw.bad-input', { stream: conn.stream, code: e.code, message: e.message });
      this.emit('bad-input', e, conn.stream);
    }
    this.send(conn, { type: 'error', code: e.code, message: e.message });
    this.forget(conn);
    conn.socket.end();
    this.poke();
  }

  /** Marks a shim connection closed and lets go of it; returns its stream's state, if it had one. */
  private forget(conn: Conn): StreamState | undefined {
    conn.closed = true;
    conn.abort.abort();
    this.conns.delete(conn);
    this.counters.open--;
    const s = conn.stream ? this.streams.get(conn.stream) : undefined;
    if (s) this.disconnected(s);
    return s;
  }

  /** Handles one frame; returns a promise only when the answer must wait. Throws an {@link FtcpError} on bad input. */
  private handle(conn: Conn, frame: Buffer): Promise<void> | undefined {
    if (conn.closed) return undefined;
    if (conn.stream !== null && frame[1] === NswMsgType.CALL) {
      // The hot path: a record goes to the sink as the frame's own bytes, undecoded.
      const { callNo, data } = callRecordOf(frame);
      this.record(conn.stream, this.streams.get(conn.stream)!, callNo, data);
      return undefined;
    }
    if (conn.stream !== null && frame[1] === NswMsgType.DONE) {
      // Playback's bulk path: a replica's written bytes stay a view of the frame until the send buffer keeps them.
      return this.done(conn, conn.stream, this.streams.get(conn.stream)!, doneOf(frame));
    }
    const msg = decodeMessage(frame);
    if (conn.stream === null) {
      if (msg.type !== 'hello') throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `${msg.type} before HELLO`);
      this.hello(conn, msg);
      return undefined;
    }
    const stream = this.streams.get(conn.stream)!;
    switch (msg.type) {
      case 'call':
        this.record(conn.stream, stream, msg.call.callNo, encodeCallData(msg.call));
        return undefined;
      case 'wait':
        this.wait(conn, stream, msg.callNo);
        return undefined;
      case 'play':
        return this.play(conn, conn.stream, stream, msg.call);
      case 'done':
        return this.done(conn, conn.stream, stream, msg.call);
      case 'played':
        this.played(conn.stream, stream, msg.consumed, msg.peeked);
        return undefined;
      case 'adopt':
        return this.adopt(conn, conn.stream, stream, msg.fd, msg.key);
      case 'adopted':
        this.adopted(conn.stream, msg);
        return undefined;
      default:
        throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `a shim does not send ${msg.type}`);
    }
  }

  private hello(conn: Conn, msg: Extract<NswMessage, { type: 'hello' }>): void {
    const want = this.options.mode === 'record' ? ShimMode.RECORD : ShimMode.PLAYBACK;
    if (msg.mode !== want) {
      throw new FtcpError(NswErrorCode.WRONG_MODE, `shim in mode ${msg.mode} connected to a ${this.options.mode} agent`);
    }
    let s = this.streams.get(msg.name);
    if (s?.connected) throw new FtcpError(NswErrorCode.DUPLICATE_STREAM, `stream ${msg.name} is already connected`);
    // A pid the kernel handed out again: the replica process whose primary exited is gone (no stream of it is connected).
    if (this.exitedPrimaries.has(msg.pid) && ![...this.streams.values()].some((st) => st.connected && st.pid === msg.pid)) this.exitedPrimaries.delete(msg.pid);
    if (!s) this.streams.set(msg.name, (s = { last: 0, stable: 0, ahead: new Set(), appending: null, waits: [], connected: true, recording: false, pid: msg.pid, answered: 0, owed: null, lockWait: false, peeked: 0, pushed: [], pushedHead: 0, reader: null }));
    s.connected = true;
    s.pid = msg.pid;
    if (s.reader?.ended) s.reader = null;
    conn.stream = msg.name;
    this.counters.streams++;
    this.logger?.log('info', 'nsw.hello', { stream: msg.name, pid: msg.pid, ppid: msg.ppid });
    this.emit('hello', msg.name);
  }

  /** A CALL: `data` is its record (the call body from the kind on, flags 0), checked by the caller. */
  private record(name: string, s: StreamState, callNo: number, data: Buffer): void {
    if (this.options.mode !== 'record' && !s.recording) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'CALL sent to a playback agent');
    if (callNo !== s.last + 1) {
      throw new FtcpError(NswErrorCode.OUT_OF_ORDER, `stream ${name}: call ${callNo} after ${s.last}`);
    }
    s.last = callNo;
    this.counters.recorded++;
    this.counters.unstable++;
    // Not awaited: records of a stream are appended in order and become
    // stable in the background; only WAIT (output commit) waits for them.
    const sink = this.options.mode === 'record' ? this.sink! : this.liveSink!;
    const promise = sink.append(name, callNo, data);
    const pending = s.appending;
    // The same promise as the call before: it already stands for that call, now for this one too.
    if (pending !== null && pending.promise === promise) {
      pending.to = callNo;
      return;
    }
    const a: Appending = { promise, from: callNo, to: callNo };
    s.appending = a;
    promise.then(
      () => {
        // Settled: a call that gets this promise from now on needs a handler of its own.
        if (s.appending === a) s.appending = null;
        this.stable(s, a.from, a.to);
      },
      (err: unknown) => {
        if (s.appending === a) s.appending = null;
        this.counters.unstable -= a.to - a.from + 1;
        this.logger?.log('error', 'nsw.append-failed', { stream: name, callNo: a.from, lastCallNo: a.to, error: String(err) });
        // A record that can never be stable: the stream must not go on (DESIGN invariant 4).
        for (const c of this.conns) if (c.stream === name) this.refuse(c, err, true);
      },
    );
  }

  /** Calls `from`..`to` of the stream are stable. */
  private stable(s: StreamState, from: number, to: number): void {
    this.counters.unstable -= to - from + 1;
    // In-order acknowledgements, the usual case, need neither the set nor,
    // with no send waiting, the filters.
    if (from === s.stable + 1 && s.ahead.size === 0) s.stable = to;
    else {
      for (let n = from; n <= to; n++) s.ahead.add(n);
      while (s.ahead.delete(s.stable + 1)) s.stable++;
    }
    if (s.waits.length === 0) return;
    const ready = s.waits.filter((w) => w.callNo <= s.stable);
    if (ready.length === 0) return;
    s.waits = s.waits.filter((w) => w.callNo > s.stable);
    // The first was held longest (waits are in call order).
    const held = performance.now() - ready[0]!.since;
    if (held > this.longestStallMs) this.longestStallMs = held;
    for (const w of ready) w.reply();
  }

  private wait(conn: Conn, s: StreamState, callNo: number): void {
    if (this.options.mode !== 'record' && !s.recording) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'WAIT sent to a playback agent');
    if (callNo > s.last) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `WAIT for call ${callNo}, only ${s.last} sent`);
    const reply = (): void => this.send(conn, { type: 'stable', callNo: s.stable });
    if (s.stable >= callNo) reply();
    else s.waits.push({ callNo, since: performance.now(), reply });
  }

  private async play(conn: Conn, name: string, s: StreamState, call: CallBody): Promise<void> {
    if (this.options.mode !== 'playback') throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'PLAY sent to a record agent');
    if (s.recording) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name} is live; PLAY after LIVE`);
    if (s.owed) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: PLAY ${call.callNo} before the DONE of call ${s.owed.callNo}`);
    // A PLAY says the shim answered every call before it from its queue.
    this.consumeTo(name, s, call.callNo - 1);
    if (call.callNo !== s.last + 1) {
      throw new FtcpError(NswErrorCode.OUT_OF_ORDER, `stream ${name}: play ${call.callNo} after ${s.last}`);
    }
    const fetch = (call.flags & CallFlag.FETCH) !== 0;
    if ((call.flags & CallFlag.TENTATIVE) !== 0 && (!fetch || call.kind !== CallKind.CLOCK_GETTIME)) {
      throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: a tentative ${callKindName(call.kind)}${fetch ? '' : ' that is not a FETCH'}`);
    }
    if (fetch && s.pushedHead < s.pushed.length) {
      throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: FETCH of call ${call.callNo} while records from ${s.pushed[s.pushedHead]!.callNo} are queued`);
    }
    if (this.isPastLog(name, call.callNo)) {
      this.live(conn, name, s, call);
      return;
    }
    // A call the shim plays with the agent is a SYNC record or one that does not match its record, in its queue;
    // anything else was not sent yet.
    let item = s.pushedHead < s.pushed.length ? s.pushed[s.pushedHead++]! : null;
    if (!item) {
      item = await this.nextAhead(conn, name, s, call);
      if (!item) {
        // goLive() ended the wait: the primary never made this call.
        this.live(conn, name, s, call);
        return;
      }
      if (fetch) {
        // The reader goes through what the source holds already in microtasks: a turn of the loop lets the batch take it all.
        const r = s.reader!;
        if (!r.ended && r.items.length < AHEAD_RECORDS && r.bytes < AHEAD_BYTES) await new Promise<void>((resolve) => setImmediate(resolve));
        this.sendBatch(conn, s);
        return;
      }
      this.takeAhead(s.reader!);
    }
    s.last = call.callNo;
    const rec = item.rec ?? this.decodeRecord(name, call.callNo, item.raw);
    const reason = this.compare(rec, call);
    if (reason) this.diverge(name, call, rec, reason);
    let reply = rec;
    if (rec.kind === CallKind.ACCEPT && rec.result >= 0n) this.accepted(rec);
    else if (rec.kind === CallKind.RECV) reply = await this.received(conn, name, call, rec, item);
    else if (rec.kind === CallKind.SEND) {
      // The RESULT carries the primary's hash; the replica's bytes follow in a DONE, exactly as many as the primary's call moved.
      const connection = this.connectionOf(name, call);
      reply = { ...rec, payload: rec.payload.subarray(CONN_KEY_SIZE) };
      if (rec.result > 0n) s.owed = { callNo: call.callNo, kind: rec.kind, rec, connection };
    } else if (rec.kind === CallKind.LOCK) {
      // The attempt runs on the replica once every lower position of its domain did (FT-TCP 3.8); its DONE follows.
      let lock: LockPosition;
      try {
        lock = decodeLockPosition(rec.payload);
      } catch (err) {
        throw new FtcpError(ErrorCode.MALFORMED_FRAME, `stream ${name}: record ${call.callNo} is bad`, { cause: err });
      }
      await this.lockTurn(conn, s, lock.domain, lock.attempt);
      s.owed = { callNo: call.callNo, kind: rec.kind, rec, lock, stage: 'attempt' };
    }
    this.counters.played++;
    this.send(conn, { type: 'result', call: { ...reply, callNo: call.callNo, flags: 0 } });
    if (!s.owed) s.answered = call.callNo;
    this.poke();
  }

  private decodeRecord(name: string, callNo: number, raw: Buffer): CallData {
    try {
      return decodeCallData(raw);
    } catch (err) {
      throw new FtcpError(ErrorCode.MALFORMED_FRAME, `stream ${name}: record ${callNo} is bad`, { cause: err });
    }
  }

  /**
   * Answers a FETCH (the shim's queue is empty): RECORDS with the stream's
   * next records read so far, from the call fetched on, as many as fit a
   * batch. Nothing is compared here: the shim checks each call itself.
   */
  private sendBatch(conn: Conn, s: StreamState): void {
    const r = s.reader!;
    let size = 0;
    let n = 0;
    while (n < r.items.length && RECORDS_FIXED_SIZE + size + r.items[n]!.size <= MAX_BATCH) size += r.items[n++]!.size;
    const batch = r.items.splice(0, n);
    r.bytes -= size;
    s.pushed = batch;
    s.pushedHead = 0;
    this.counters.batches++;
    r.resume?.();
    if (conn.closed) return;
    if (conn.batchFree) conn.batchBuf ??= Buffer.allocUnsafe(NSW_HEADER_SIZE + MAX_BATCH);
    const frame = recordsFrame(batch[0]!.callNo, n, size, conn.batchFree ? conn.batchBuf! : undefined);
    let at = NSW_HEADER_SIZE + RECORDS_FIXED_SIZE;
    for (const a of batch) at += writeAhead(frame, at, a);
    const reused = frame.buffer === conn.batchBuf?.buffer;
    if (reused) conn.batchFree = false;
    conn.socket.write(frame, () => {
      if (reused) conn.batchFree = true;
    });
  }

  /**
   * The shim answered every call up to `n` from its queue: those records are
   * consumed (the replica's read of a connection moves on by what the
   * primary's read took). A send the shim answered must have sent its DONE
   * first.
   */
  private consumeTo(name: string, s: StreamState, n: number): void {
    if (n <= s.last) return;
    const top = s.pushed.length > 0 ? s.pushed[s.pushed.length - 1]!.callNo : s.last;
    if (n > top) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: call ${n} answered, but records were sent up to ${top} only`);
    while (s.pushedHead < s.pushed.length && s.pushed[s.pushedHead]!.callNo <= n) {
      const a = s.pushed[s.pushedHead++]!;
      if (a.rec?.kind === CallKind.SEND && a.rec.result > 0n) {
        throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: call ${a.callNo}, a send, answered without its DONE`);
      }
      if (a.rec?.kind === CallKind.RECV && a.rec.result > 0n) a.connection!.instreamOffset += Number(a.rec.result);
      this.counters.played++;
    }
    s.last = n;
    s.answered = n;
    if (s.peeked <= n) s.peeked = 0;
    this.poke();
  }

  /** PLAYED: how far the shim answered calls from its queue, and a clock read it answered without consuming its record. */
  private played(name: string, s: StreamState, consumed: number, peeked: number): void {
    if (this.options.mode !== 'playback' || s.recording) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'PLAYED outside playback');
    // A DONE or PLAY sent after it may have said more already.
    if (consumed < s.last) return;
    if (peeked !== 0 && peeked > (s.pushed.length > 0 ? s.pushed[s.pushed.length - 1]!.callNo : s.last)) {
      throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: call ${peeked} peeked, but it was never sent`);
    }
    this.consumeTo(name, s, consumed);
    s.peeked = peeked;
    this.poke();
  }

  /** The record of `call` read ahead for `s`, waiting for it; null when goLive ended the wait (past the log). A thread its primary process outlived (see cutOutlived) diverges here. */
  private async nextAhead(conn: Conn, name: string, s: StreamState, call: CallBody): Promise<Ahead | null> {
    const callNo = call.callNo;
    const r = (s.reader ??= this.startReader(conn, name, s, callNo));
    while (r.items.length === 0) {
      if (r.ended) {
        if (r.error === null) return null;
        if (r.outlived) this.diverge(name, call, STREAM_ENDED, `the primary's process exited while this thread was at call ${callNo - 1}`);
        throw r.error;
      }
      await new Promise<void>((resolve) => (r.waiter = resolve));
      r.waiter = null;
      if (conn.closed) throw new FtcpError(ErrorCode.CLOSED, 'the shim went away');
    }
    const a = r.items[0]!;
    if (a.callNo !== callNo) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: play ${callNo}, but the next record is ${a.callNo}`);
    return a;
  }

  /**
   * The primary's process of stream `name` ended (its END was read): after
   * {@link OUTLIVED_GRACE_MS}, the replica's threads of that process still
   * waiting for a record get none.
   */
  private primaryExited(name: string): void {
    const pid = this.streams.get(name)?.pid;
    if (pid === undefined || this.exitedPrimaries.has(pid)) return;
    this.exitedPrimaries.set(pid, 'exited');
    setTimeout(() => this.cutOutlived(pid), OUTLIVED_GRACE_MS).unref();
  }

  private cutOutlived(pid: number): void {
    if (this.lifetime.signal.aborted || this.exitedPrimaries.get(pid) !== 'exited') return;
    this.exitedPrimaries.set(pid, 'cut');
    for (const st of this.streams.values()) if (st.pid === pid && st.connected && !st.recording && st.reader && st.reader.items.length === 0) this.cutReader(st.reader);
  }

  private cutReader(r: ReadAhead): void {
    if (r.ended) return;
    r.outlived = true;
    r.stop.abort();
  }

  /** Removes the first record read ahead (a PLAY answers it by itself), making room for more. */
  private takeAhead(r: ReadAhead): void {
    r.bytes -= r.items.shift()!.size;
    r.resume?.();
  }

  /**
   * Starts reading `name`'s records from `from` on, ahead of the shim: each
   * record once, in call order (the source's contract), at most
   * {@link AHEAD_RECORDS} and {@link AHEAD_BYTES} ahead, never past the log
   * once the agent went live. A RECV's client bytes are read with it, in
   * order, so a batch can carry them.
   */
  private startReader(conn: Conn, name: string, s: StreamState, from: number): ReadAhead {
    const stop = new AbortController();
    const r: ReadAhead = {
      next: from, items: [], bytes: 0, stop, signal: AbortSignal.any([stop.signal, conn.abort.signal, this.lifetime.signal]), ended: false, error: null, waiter: null, resume: null, outlived: false,
    };
    const end = (error: unknown): void => {
      r.ended = true;
      r.error = error;
      r.waiter?.();
    };
    void (async () => {
      for (;;) {
        if (r.items.length >= AHEAD_RECORDS || r.bytes >= AHEAD_BYTES) {
          await new Promise<void>((resolve) => (r.resume = resolve));
          r.resume = null;
          continue;
        }
        if (this.isPastLog(name, r.next)) return end(null);
        let item: Ahead;
        // Past the cut (see cutOutlived), a record still missing gets the grace once more, then never comes.
        const cut = this.exitedPrimaries.size > 0 && this.exitedPrimaries.get(s.pid) === 'cut' ? setTimeout(() => this.cutReader(r), OUTLIVED_GRACE_MS) : null;
        try {
          const raw = await this.source!.read(name, r.next, r.signal);
          item = await this.readAheadItem(name, r, raw);
        } catch (err) {
          if (r.outlived) return end(err);
          if (r.stop.signal.aborted && !conn.abort.signal.aborted && !this.lifetime.signal.aborted && this.isPastLog(name, r.next)) return end(null);
          return end(err);
        }
        finally {
          if (cut) clearTimeout(cut);
        }
        r.items.push(item);
        r.bytes += item.size;
        r.next++;
        r.waiter?.();
      }
    })();
    return r;
  }

  /** One record read ahead, with the client bytes of a read. */
  private async readAheadItem(name: string, r: ReadAhead, raw: Buffer): Promise<Ahead> {
    const callNo = r.next;
    // Well formed as the buffer keeps records (flags 0); anything else is played with the agent, which reports it.
    if (raw.length < RECORD_FIXED_SIZE || raw.readUInt32LE(24) !== raw.length - RECORD_FIXED_SIZE || raw.length - RECORD_FIXED_SIZE > MAX_PAYLOAD || raw.readUInt16LE(2) !== 0) {
      return { callNo, raw, size: RECORD_FIXED_SIZE, rec: null, sync: true, bad: true };
    }
    const kind = raw.readUInt16LE(0);
    if (kind === CallKind.END && raw.readBigUInt64LE(16) === END_PROCESS) this.primaryExited(name);
    if (kind !== CallKind.ACCEPT && kind !== CallKind.RECV && kind !== CallKind.SEND && kind !== CallKind.LOCK) return { callNo, raw, size: raw.length, rec: null, sync: false };
    const rec = recordView(raw);
    if (kind === CallKind.LOCK) return { callNo, raw, size: raw.length, rec, sync: true };
    if (kind === CallKind.ACCEPT) {
      // The connection is known from here on, so the reads after it can come with their bytes.
      if (rec.result >= 0n) this.accepted(rec);
      return { callNo, raw, size: raw.length, rec, sync: false };
    }
    const c = rec.payload.length >= CONN_KEY_SIZE ? this.connections.get(rec.payload.readBigUInt64LE(0)) : undefined;
    if (kind === CallKind.SEND || rec.result <= 0n) return { callNo, raw, size: raw.length, rec, connection: c, sync: false };
    // A read: the client's bytes, from where the replica's reads of that connection will be then. Another
    // stream's bytes still on their way make that unknown (two threads reading one connection): the agent reads them when played.
    if (!c || !this.options.instream || (c.fetched !== c.instreamOffset && c.fetchedBy !== name)) return { callNo, raw, size: raw.length, rec, connection: c, sync: true };
    const n = Number(rec.result);
    const bytes = await this.options.instream.readInstream(c.peer, c.fetched, n, r.signal);
    if (bytes.length !== n) throw new FtcpError(ErrorCode.INTERNAL, `instream gave ${bytes.length} bytes, ${n} asked`);
    c.fetched += n;
    c.fetchedBy = name;
    // Too many for a batch: the shim plays it with the agent, which has the bytes already.
    if (rec.payload.length + n > MAX_BATCH_PAYLOAD) return { callNo, raw, size: raw.length, rec, connection: c, bytes, sync: true };
    return { callNo, raw, size: raw.length + n, rec, connection: c, bytes, sync: false };
  }

  /** A stream's shim went away: it reads nothing ahead any more (what it read stays, for {@link watchEnd}). */
  private disconnected(s: StreamState): void {
    s.connected = false;
    // Their answers would go to the closed connection: nobody waits for them any more.
    s.waits = [];
    s.reader?.stop.abort();
    s.reader?.resume?.();
  }

  /** Waits for position `position` of a lock domain to be due, marking the stream as waiting meanwhile. */
  private async lockTurn(conn: Conn, s: StreamState, domain: bigint, position: number): Promise<void> {
    s.lockWait = true;
    this.poke();
    try {
      await this.locks.due(domain, position, conn.abort.signal);
    } finally {
      s.lockWait = false;
    }
  }

  /**
   * DONE: what the replica did for real after a RESULT: the bytes of a send,
   * or the outcome of a lock attempt or grant. Returns a promise when the
   * answer (the RESULT that lets a contended lock call's grant run) must wait.
   */
  private done(conn: Conn, name: string, s: StreamState, call: CallBody): Promise<void> | undefined {
    if (this.options.mode !== 'playback' || s.recording) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'DONE outside playback');
    if (!s.owed && call.kind === CallKind.SEND) {
      // A send the shim answered from its queue: every call before it was answered too.
      this.consumeTo(name, s, call.callNo - 1);
      const a = s.pushed[s.pushedHead];
      if (a?.callNo === call.callNo && a.rec?.kind === CallKind.SEND && a.rec.result > 0n) {
        s.owed = { callNo: a.callNo, kind: a.rec.kind, rec: a.rec, connection: this.connectionOfRecord(name, a) };
        s.pushedHead++;
        s.last = a.callNo;
        this.counters.played++;
      }
    }
    const owed = s.owed;
    if (!owed || owed.callNo !== call.callNo || owed.kind !== call.kind || call.arg !== owed.rec.arg) {
      throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: DONE for call ${call.callNo} (${callKindName(call.kind)}) is not owed`);
    }
    if (owed.kind === CallKind.LOCK) return this.locked(conn, name, s, owed, call);
    s.owed = null;
    this.sent(name, call, owed.rec, owed.connection!);
    s.answered = call.callNo;
    this.poke();
    return undefined;
  }

  /**
   * The DONE of a lock call. An attempt that the primary found contended must
   * be contended here too (the replica's order is the primary's); its grant
   * then runs when due. The call's final outcome must be the primary's.
   */
  private locked(conn: Conn, name: string, s: StreamState, owed: OwedDone, call: CallBody): Promise<void> | undefined {
    const lock = owed.lock!;
    const rec = owed.rec;
    if (owed.stage === 'attempt' && lock.grant !== 0) {
      if (call.flags !== CallFlag.TRY) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: the DONE of a contended lock attempt is not marked TRY`);
      if (call.result !== -1n || !CONTENDED.has(call.errno)) {
        this.diverge(name, call, rec, `lock attempt returned ${call.result} (errno ${call.errno}) on the replica; the primary's found the lock held and waited`);
      }
      this.locks.performed(lock.domain, lock.attempt);
      owed.stage = 'grant';
      return this.lockTurn(conn, s, lock.domain, lock.grant).then(() => {
        this.send(conn, { type: 'result', call: { ...rec, payload: Buffer.alloc(0), callNo: call.callNo, flags: 0 } });
      });
    }
    if (call.flags !== 0) throw new FtcpError(NswErrorCode.PROTOCOL_STATE, `stream ${name}: unexpected flags 0x${call.flags.toString(16)} on a lock DONE`);
    if (call.result !== rec.result || call.errno !== rec.errno) {
      this.diverge(name, call, rec, `lock returned ${rec.result} (errno ${rec.errno}) on the primary, ${call.result} (errno ${call.errno}) on the replica`);
    }
    this.locks.performed(lock.domain, owed.stage === 'grant' ? lock.grant : lock.attempt);
    s.owed = null;
    s.answered = call.callNo;
    this.poke();
    return undefined;
  }

  /**
   * After goLive, lock positions whose records were lost with the primary
   * would hold their domain's later operations forever: once a domain with
   * such a gap below a waiter has been idle for a moment and no stream could
   * still perform a position (every stream with records left waits for its
   * lock turn), or for `adoptWaitMs` in any case, the gap is skipped, loudly.
   */
  private checkLockGaps(): void {
    const last = this.lastCallNos;
    if (!last) return;
    const canStillPerform = [...this.streams].some(([name, st]) => st.connected && !st.recording && !st.lockWait && st.answered < (last.get(name) ?? 0));
    const sinceLive = performance.now() - this.liveAt;
    for (const d of this.locks.blocked()) {
      if (d.lowestWaiting === null || d.lowestWaiting <= d.done + 1) continue;
      if (Math.min(d.idleMs, sinceLive) < (canStillPerform ? (this.options.adoptWaitMs ?? ADOPT_WAIT_MS) : LOCK_GAP_QUIET_MS)) continue;
      this.logger?.log('warn', 'nsw.lock-gap-skipped', { domain: d.domain.toString(16), from: d.done + 1, to: d.lowestWaiting - 1 });
      const gap: LockGap = { domain: d.domain, from: d.done + 1, to: d.lowestWaiting - 1 };
      this.emit('lock-gap', gap);
      this.locks.skipBelow(d.domain, d.lowestWaiting);
    }
  }

  private diverge(name: string, call: CallBody, rec: CallData, reason: string): never {
    const d: Divergence = { stream: name, callNo: call.callNo, primary: rec, replica: call, reason };
    this.diverged = true;
    this.counters.divergences++;
    this.logger?.log('error', 'nsw.divergence', { stream: name, callNo: call.callNo, reason });
    this.emit('divergence', d);
    throw new FtcpError(NswErrorCode.DIVERGENCE, `stream ${name} call ${call.callNo}: ${reason}`);
  }

  /** The primary accepted a replicated connection: the replica's copy starts here. */
  private accepted(rec: CallData): void {
    const key = sendHash(rec.payload);
    const peer = decodeSockaddr(rec.payload);
    this.acceptedPeers.add(`${peer.address}:${peer.port}`);
    if (!this.connections.has(key)) this.connections.set(key, new ConnectionState(key, peer));
  }

  /**
   * Whether the replica replayed an accept of a connection from `peer`, even
   * one it has closed since. A connection of the log that no accept names
   * was still in the dead primary's accept queue (see the backup's
   * handshake rebuild).
   */
  hasAccepted(peer: Pick<PeerAddress, 'address' | 'port'>): boolean {
    return this.acceptedPeers.has(`${peer.address}:${peer.port}`);
  }

  /** The connection of a SEND record read ahead, by the key it carries. */
  private connectionOfRecord(name: string, a: Ahead): ConnectionState {
    const c = a.connection ?? (a.rec!.payload.length >= CONN_KEY_SIZE ? this.connections.get(a.rec!.payload.readBigUInt64LE(0)) : undefined);
    if (!c) throw new FtcpError(ErrorCode.UNKNOWN_CONNECTION, `stream ${name}: call ${a.callNo} sent on a connection no accept replayed`);
    return c;
  }

  private connectionOf(name: string, call: CallBody): ConnectionState {
    if (call.payload.length < 8) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `stream ${name}: ${callKindName(call.kind)} without a connection key`);
    const key = call.payload.readBigUInt64LE(0);
    const c = this.connections.get(key);
    if (!c) throw new FtcpError(ErrorCode.UNKNOWN_CONNECTION, `stream ${name}: no replicated connection with key ${key.toString(16)}`);
    return c;
  }

  /**
   * A read: the primary's length and error, with the client's bytes from the
   * buffer (FT-TCP 3.7), read ahead with the record or now, from where the
   * replica's reads of the connection are.
   */
  private async received(conn: Conn, name: string, call: CallBody, rec: CallData, item: Ahead): Promise<CallData> {
    const c = this.connectionOf(name, call);
    if (rec.result <= 0n) return { ...rec, payload: Buffer.alloc(0) };
    const n = Number(rec.result);
    let bytes = item.bytes;
    if (!bytes) {
      if (!this.options.instream) throw new FtcpError(ErrorCode.NOT_AVAILABLE, 'a replica read a replicated connection but the agent has no instream source');
      bytes = await this.options.instream.readInstream(c.peer, c.fetched, n, conn.abort.signal);
      if (bytes.length !== n) throw new FtcpError(ErrorCode.INTERNAL, `instream gave ${bytes.length} bytes, ${n} asked`);
      c.fetched += n;
      c.fetchedBy = name;
    }
    c.instreamOffset += n;
    return { ...rec, payload: bytes };
  }

  /**
   * A write: nothing leaves; the bytes the replica's call moved (as many as
   * the primary's) are compared by hash with the record (FT-TCP 3.4) and kept
   * in the send buffer (FT-TCP 3.7).
   */
  private sent(name: string, call: CallBody, rec: CallData, c: ConnectionState): void {
    const bytes = call.payload;
    // The shim vouches for the hash it compared (CHECKED); otherwise the agent hashes.
    const same =
      BigInt(bytes.length) === rec.result && call.result === rec.result && rec.payload.length === CONN_KEY_SIZE + 8 &&
      ((call.flags & CallFlag.CHECKED) !== 0 || sendHash(bytes) === rec.payload.readBigUInt64LE(CONN_KEY_SIZE));
    if (!same) {
      this.diverge(name, call, rec, `send of ${rec.result} bytes: the replica's bytes differ from the primary's (hash)`);
    }
    c.sent(bytes);
  }

  /** Replicated connections of this replica: positions and send buffers. */
  replicatedConnections(): ReplicatedConnection[] {
    return [...this.connections.values()].map((c) => c.snapshot());
  }

  /**
   * The client acknowledged the replica's outstream up to `offset` (from the
   * buffer's client-ack records): trims that connection's send buffer.
   */
  clientAcked(key: bigint, offset: number): void {
    this.connections.get(key)?.acked(offset);
  }

  /**
   * Going live (DESIGN "Failover" step 3): after the primary failed and this
   * replica was promoted, each stream plays back up to the primary's last
   * stable call (`lastCallNos`, from the buffer's failure positions; a stream
   * not named had none) and then records its calls to `sink`. A thread
   * waiting for a record past the end is told at once.
   *
   * Each process's shim then rebuilds its replicated connections (ADOPT, see
   * {@link NswAgentOptions.rebuild}) before the first call it performs for
   * real; each ends in a `'rebuilt'` event.
   *
   * Throws an {@link FtcpError} (DIVERGENCE) if this replica diverged: it must
   * not take over (DESIGN invariant 5).
   */
  goLive(lastCallNos: ReadonlyMap<string, number>, sink: RecordSink): void {
    if (this.options.mode !== 'playback') throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'only a playback agent goes live');
    if (this.diverged) throw new FtcpError(NswErrorCode.DIVERGENCE, 'this replica diverged from the primary and cannot take over');
    this.lastCallNos = lastCallNos;
    this.liveSink = sink;
    this.liveAt = performance.now();
    this.gapTimer ??= setInterval(() => this.checkLockGaps(), LOCK_GAP_QUIET_MS / 2);
    this.gapTimer.unref();
    this.logger?.log('info', 'nsw.go-live', { streams: lastCallNos.size });
    // Nothing past the log is read or sent any more; a read waiting for such a record ends.
    for (const [name, s] of this.streams) {
      const r = s.reader;
      if (!r || r.ended || !this.isPastLog(name, r.next)) continue;
      const keep = r.items.filter((a) => !this.isPastLog(name, a.callNo));
      r.bytes -= r.items.reduce((n, a) => n + a.size, 0) - keep.reduce((n, a) => n + a.size, 0);
      r.items = keep;
      r.stop.abort();
      r.resume?.();
    }
  }

  /** Names of the streams that went live, sorted. */
  liveStreams(): string[] {
    return [...this.streams].filter(([, s]) => s.recording).map(([name]) => name).sort();
  }

  private isPastLog(stream: string, callNo: number): boolean {
    return this.lastCallNos !== null && callNo > (this.lastCallNos.get(stream) ?? 0);
  }

  /** Tells the shim to perform `call` for real and record from it on (RESULT with LIVE). */
  private live(conn: Conn, name: string, s: StreamState, call: CallBody): void {
    s.recording = true;
    s.peeked = 0;
    s.reader?.stop.abort();
    s.reader?.resume?.();
    s.reader = null;
    s.pushed = [];
    s.pushedHead = 0;
    s.last = call.callNo - 1;
    s.stable = s.last;
    this.counters.wentLive++;
    this.logger?.log('info', 'nsw.stream-live', { stream: name, callNo: call.callNo });
    this.send(conn, { type: 'result', call: { ...call, flags: CallFlag.LIVE, errno: 0, result: 0n, payload: Buffer.alloc(0) } });
    this.poke();
  }

  /** Something that may settle a process changed: waiting ADOPTs look again. */
  private poke(): void {
    if (this.settleWaiters.size === 0) return;
    for (const check of [...this.settleWaiters]) check();
  }

  /**
   * Streams of `stream`'s process that have not consumed their records yet:
   * neither live, nor disconnected, nor answered up to their entry in
   * goLive's `lastCallNos`. The process is the stream's logical one (its
   * name without trailing threads, which covers threads not connected yet)
   * and every connected stream with the same HELLO pid.
   */
  private unsettled(stream: string): string[] {
    const last = this.lastCallNos!;
    const proc = processOf(stream);
    const pid = this.streams.get(stream)?.pid;
    const members = new Set<string>();
    for (const [name, st] of this.streams) if (processOf(name) === proc || (st.connected && st.pid === pid)) members.add(name);
    for (const name of last.keys()) if (processOf(name) === proc) members.add(name);
    return [...members].filter((name) => {
      const st = this.streams.get(name);
      const end = last.get(name) ?? 0;
      // Never connected: all its records are still to be played.
      if (!st) return end > 0;
      return st.connected && !st.recording && Math.max(st.answered, st.peeked) < end;
    }).sort();
  }

  /**
   * Resolves with [] once `stream`'s process is settled, with the streams
   * still replaying after {@link NswAgentOptions.adoptWaitMs}, or with null
   * when the connection closed first.
   */
  private settled(conn: Conn, stream: string): Promise<string[] | null> {
    return new Promise((resolve) => {
      const finish = (r: string[] | null): void => {
        clearTimeout(timer);
        this.settleWaiters.delete(check);
        conn.abort.signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const check = (): void => {
        if (this.unsettled(stream).length === 0) finish([]);
      };
      const onAbort = (): void => finish(null);
      const timer = setTimeout(() => finish(this.unsettled(stream)), this.options.adoptWaitMs ?? ADOPT_WAIT_MS);
      conn.abort.signal.addEventListener('abort', onAbort, { once: true });
      this.settleWaiters.add(check);
      check();
    });
  }

  /**
   * ADOPT (DESIGN "Failover", step 4): a promoted replica's shim rebuilds the
   * replicated connection at descriptor `fd`. Answered only once every
   * stream of its process has consumed its records: a thread still replaying
   * reads of the connection would otherwise take client bytes that also go
   * into the rebuilt receive queue. Then the {@link RebuildSource}'s plan
   * goes back as REBUILD, or an ERROR refuses this one rebuild (the stream
   * stays connected and live; the descriptor reads EOF).
   */
  private async adopt(conn: Conn, name: string, s: StreamState, fd: number, key: bigint): Promise<void> {
    if (this.options.mode !== 'playback' || this.lastCallNos === null) {
      throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'ADOPT before the agent went live (goLive)');
    }
    const refuse = (code: string, message: string): void => {
      this.refusals.set(`${name}\0${key}`, `${code}: ${message}`);
      this.logger?.log('error', 'nsw.adopt-refused', { stream: name, fd, key: key.toString(16), code, message });
      this.send(conn, { type: 'error', code, message });
    };
    const pending = await this.settled(conn, name);
    if (pending === null || conn.closed) return;
    if (pending.length > 0) {
      refuse(
        ErrorCode.TIMEOUT,
        `streams ${pending.join(', ')} had not consumed their records after ${this.options.adoptWaitMs ?? ADOPT_WAIT_MS} ms; ` +
          'rebuilding now could give the client\'s bytes to the server twice',
      );
      return;
    }
    const c = this.connections.get(key);
    if (!c) {
      refuse(ErrorCode.UNKNOWN_CONNECTION, `descriptor ${fd}: no replicated connection with key ${key.toString(16)} was accepted`);
      return;
    }
    const peer = `${c.peer.address}:${c.peer.port}`;
    const earlier = this.adoptions.get(key);
    if (earlier) {
      refuse(
        ErrorCode.CONFLICT,
        `connection from ${peer} was already adopted by stream ${earlier.stream} (pid ${earlier.pid}, descriptor ${earlier.fd}); ` +
          'two processes hold it (a fork), only one can have the socket',
      );
      return;
    }
    if (!this.options.rebuild) {
      refuse(ErrorCode.NOT_AVAILABLE, `connection from ${peer}: this agent has no RebuildSource, so it cannot be rebuilt`);
      return;
    }
    let frame: Buffer;
    try {
      const plan = await this.options.rebuild.plan(c.snapshot());
      checkRebuildPlan(plan, c.peer);
      frame = encodeMessage({ type: 'rebuild', state: plan.state, inq: plan.inq, outq: plan.outq });
    } catch (err) {
      const why = isFtcpError(err) ? `${err.code}: ${err.message}` : String(err);
      refuse(NswErrorCode.REBUILD_FAILED, `connection from ${peer}: no rebuild plan (${why})`);
      return;
    }
    if (conn.closed) return;
    this.adoptions.set(key, { stream: name, pid: s.pid, fd });
    this.logger?.log('info', 'nsw.rebuild', { stream: name, fd, peer, bytes: frame.length });
    conn.socket.write(frame);
  }

  /** ADOPTED: how one adoption ended; reported as a `'rebuilt'` event and in the counters. */
  private adopted(name: string, msg: Extract<NswMessage, { type: 'adopted' }>): void {
    if (this.options.mode !== 'playback') throw new FtcpError(NswErrorCode.PROTOCOL_STATE, 'ADOPTED sent to a record agent');
    const c = this.connections.get(msg.key);
    const ok = msg.step === AdoptStep.NONE && msg.newFd === msg.fd;
    const report: RebuildReport = { stream: name, fd: msg.fd, key: msg.key, peer: c?.peer ?? null, ok, step: msg.step };
    if (!ok) {
      const refusal = this.refusals.get(`${name}\0${msg.key}`);
      this.refusals.delete(`${name}\0${msg.key}`);
      report.error =
        msg.step === AdoptStep.AGENT
          ? `refused by the agent: ${refusal ?? 'no reason kept'}`
          : `failed at ${msg.stepName || `step ${msg.step}`}${msg.errno ? `: ${errnoText(msg.errno)}` : ''}`;
      this.counters.rebuildFailed++;
      this.logger?.log('error', 'nsw.rebuild-failed', { stream: name, fd: msg.fd, peer: c ? `${c.peer.address}:${c.peer.port}` : null, error: report.error });
    } else {
      this.counters.rebuilt++;
      this.logger?.log('info', 'nsw.rebuilt', { stream: name, fd: msg.fd, peer: c ? `${c.peer.address}:${c.peer.port}` : null });
    }
    this.emit('rebuilt', report);
  }

  /** Why the replica's call does not match the primary's record, or null when it does. */
  private compare(rec: CallData, call: CallBody): string | null {
    if (rec.kind !== call.kind) return `the primary called ${callKindName(rec.kind)}, the replica ${callKindName(call.kind)}`;
    const what = callKindName(rec.kind);
    if (rec.arg !== call.arg) return `${what} with argument ${rec.arg} on the primary, ${call.arg} on the replica`;
    // A setsockopt on a placeholder is not performed; the value the replica passes must be the primary's.
    if (rec.kind === CallKind.SOCKOPT && (rec.arg & SOCKOPT_GET) === 0n && !rec.payload.equals(call.payload)) {
      return `setsockopt (level ${(rec.arg >> 32n) & 0xffffn}, option ${rec.arg & 0xffffffffn}) with value ${rec.payload.toString('hex')} on the primary, ${call.payload.toString('hex')} on the replica`;
    }
    // A replicated read or write: on the primary's connection (the record's key is the PLAY's).
    if ((rec.kind === CallKind.RECV || rec.kind === CallKind.SEND) && !keyOf(rec.payload).equals(keyOf(call.payload))) {
      return `${what} on connection ${keyOf(rec.payload).toString('hex')} on the primary, ${keyOf(call.payload).toString('hex')} on the replica`;
    }
    if ((call.flags & CallFlag.COMPARE) === 0) return null;
    if (rec.result !== call.result) return `${what} returned ${rec.result} on the primary, ${call.result} on the replica`;
    if (rec.errno !== call.errno) return `${what} set errno ${rec.errno} on the primary, ${call.errno} on the replica`;
    if (!rec.payload.equals(call.payload)) return `${what} payload ${rec.payload.toString('hex')} on the primary, ${call.payload.toString('hex')} on the replica`;
    return null;
  }
}
