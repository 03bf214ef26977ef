/**
 * `StableBufferClient`: the library side of the buffer protocol, for a
 * primary (writes on one ordered channel, promises that resolve with the
 * buffer's acknowledgement) and for a backup (subscription as an async
 * iterator, reads, promotion).
 *
 * A writer survives a buffer restart: on reconnect it says hello again and
 * resends, in order, every write not yet acknowledged; the buffer treats
 * duplicates as harmless.
 */
import { EventEmitter } from 'node:events';
import { Dealer } from 'zeromq';
import { ErrorCode, FtcpError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import {
  BackupMode,
  Role,
  decodeFrame,
  decodeRecord,
  encodeFrame,
  MAX_FRAME_SIZE,
  splitFrames,
  type CallBatchRecord,
  type CallRecord,
  type ClientAckRecord,
  type CloseRecord,
  type ConnRecord,
  type LogRecord,
  type Message,
  type MessageOf,
  type Positions,
  type SegmentRecord,
} from './protocol/messages.js';
import { checkEndpoint } from './endpoint.js';
import { Heartbeat } from './heartbeat.js';
import { SendQueue } from './sendqueue.js';

export interface ClientOptions {
  /** The buffer's ZeroMQ endpoint, e.g. tcp://10.0.0.2:7400. */
  endpoint: string;
  /** This node's name; the epoch's owner is named by it. */
  node: string;
  /** How long a read, hello or promote may wait for its reply (ms). */
  requestTimeoutMs?: number;
  /** CURVE keys (Z85): the buffer's public key and this client's pair. */
  curve?: { serverPublicKey: string; publicKey: string; secretKey: string };
  logger?: Logger;
}

interface Pending {
  frame: Buffer;
  /** The kind of reply that answers it; any other (but an error) is a protocol fault. */
  expect: Message['kind'];
  resolve(msg: Message): void;
  reject(err: Error): void;
  /** Writes are resent after a reconnect; requests time out instead. */
  write: boolean;
  timer: NodeJS.Timeout | null;
  sentAt: number;
  /** A write the buffer refused for a full log at least once (counted once). */
  refused?: boolean;
}

/** How long a write refused for a full log waits before it is offered again. */
const FULL_LOG_RETRY_MS = 1000;

/** What a subscription yields. */
export type SubscriptionEvent =
  | { kind: 'records'; entries: { lsn: number; record: LogRecord }[] }
  | { kind: 'failed'; epoch: number; node: string; positions: Positions }
  | { kind: 'epoch'; epoch: number; node: string };

type Fields<T> = Omit<T, 'kind' | 'epoch'>;

/** Largest instream read in one request: its reply must fit one frame (MAX_FRAME_SIZE) with room to spare. */
const READ_PIECE = 1024 * 1024;

/** A live subscription; iterate it with `for await`. Consumption is acknowledged as you pull. */
export class Subscription implements AsyncIterable<SubscriptionEvent> {
  private readonly queue: SubscriptionEvent[] = [];
  private waiter: ((v: IteratorResult<SubscriptionEvent>) => void) | null = null;
  private failure: Error | null = null;
  private ended = false;
  /** Next LSN to consume. */
  nextLsn: number;
  /** Next LSN not yet received: a reconnect resubscribes from here, so nothing queued arrives twice. */
  receivedUpTo: number;

  constructor(
    private readonly owner: StableBufferClient,
    readonly reqId: number,
    fromLsn: number,
    readonly window: number,
    readonly mode: number,
  ) {
    this.nextLsn = fromLsn;
    this.receivedUpTo = fromLsn;
  }

  /** @internal */
  deliver(ev: SubscriptionEvent): void {
    if (this.ended) return;
    if (ev.kind === 'records') {
      // After a resubscribe the buffer may repeat what was in flight: drop it.
      const fresh = ev.entries.filter((e) => e.lsn >= this.receivedUpTo);
      if (fresh.length === 0) return;
      ev = { kind: 'records', entries: fresh };
      this.receivedUpTo = fresh[fresh.length - 1]!.lsn + 1;
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: ev, done: false });
    } else this.queue.push(ev);
  }

  /** @internal */
  fail(err: Error): void {
    this.failure = err;
    this.end();
  }

  /** Stops the subscription; a pending `next()` ends. */
  end(): void {
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      if (this.failure) w(Promise.reject(this.failure) as never);
      else w({ value: undefined, done: true });
    }
  }

  private consumedUpTo(ev: SubscriptionEvent): void {
    if (ev.kind !== 'records' || ev.entries.length === 0) return;
    this.nextLsn = ev.entries[ev.entries.length - 1]!.lsn + 1;
    this.owner.acknowledgeConsumed(this.nextLsn);
  }

  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent> {
    let last: SubscriptionEvent | null = null;
    return {
      next: () => {
        // Pulling the next event means the previous one was processed.
        if (last) this.consumedUpTo(last);
        last = null;
        const ev = this.queue.shift();
        if (ev) {
          last = ev;
          return Promise.resolve({ value: ev, done: false });
        }
        if (this.failure) return Promise.reject(this.failure);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiter = (r) => {
            if (!r.done) last = r.value;
            resolve(r);
          };
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export class StableBufferClient extends EventEmitter {
  private readonly socket: Dealer;
  private readonly out: SendQueue;
  private readonly pending = new Map<number, Pending>();
  private nextReqId = 1;
  private closed = false;
  private closing: Promise<void> = Promise.resolve();
  private epochValue = 0;
  private writerEpoch: number | null = null;
  private connected = false;
  private subscription: Subscription | null = null;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private lastHeard = 0;
  /** Reconnects seen; writes are resent after each. */
  reconnects = 0;
  /** Probes from the buffer answered. */
  probesAnswered = 0;
  /**
   * Writes the buffer refused: for a full log (FTCP_ERR_CAPACITY), which
   * wait and are offered again every FULL_LOG_RETRY_MS and after a
   * reconnect, so a buffer restarted with a larger cap takes them; or for
   * good (a record that contradicts the log), which reject. Each refusal
   * also emits `write-refused` with its FtcpError.
   */
  writesRefused = 0;
  private heartbeat: Heartbeat | null = null;

  private constructor(readonly options: ClientOptions) {
    super();
    this.logger = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.socket = new Dealer({
      linger: 0,
      reconnectInterval: 20,
      reconnectMaxInterval: 200,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
    });
    if (options.curve) {
      this.socket.curveServerKey = options.curve.serverPublicKey;
      this.socket.curvePublicKey = options.curve.publicKey;
      this.socket.curveSecretKey = options.curve.secretKey;
    }
    this.out = new SendQueue(this.socket);
  }

  /**
   * Connects (ZeroMQ connects lazily: the first request shows whether the buffer answers).
   * @throws FtcpError `FTCP_ERR_BAD_CONFIG` when `endpoint` is not one to connect to.
   */
  static connect(options: ClientOptions): StableBufferClient {
    checkEndpoint(options.endpoint, 'connect');
    const c = new StableBufferClient(options);
    c.socket.connect(options.endpoint);
    void c.receiveLoop();
    void c.watchEvents();
    return c;
  }

  /** The epoch this client writes in (0 before a writer hello). */
  get epoch(): number {
    return this.epochValue;
  }

  /** Writes sent and not yet acknowledged. */
  get unacknowledged(): number {
    let n = 0;
    for (const p of this.pending.values()) if (p.write) n++;
    return n;
  }

  /** Age in ms of the oldest unacknowledged write (0 when none): how long the buffer has been silent to us. */
  oldestUnacknowledgedMs(): number {
    const now = performance.now();
    for (const p of this.pending.values()) if (p.write) return now - p.sentAt;
    return 0;
  }

  private allocReqId(): number {
    const id = this.nextReqId;
    this.nextReqId = this.nextReqId >= 0x7fffffff ? 1 : this.nextReqId + 1;
    return id;
  }

  private request<K extends Message['kind']>(msg: Message, expect: K, write = false): Promise<MessageOf<K>> {
    if (this.closed) return Promise.reject(new FtcpError(ErrorCode.CLOSED, 'client is closed'));
    const reqId = this.allocReqId();
    const frame = encodeFrame(msg, reqId);
    if (frame.length > MAX_FRAME_SIZE) {
      // Never sent: the buffer would refuse it, or ZeroMQ drop the connection
      // for it, and a write resent after every reconnect would do so forever.
      return Promise.reject(new FtcpError(ErrorCode.OVERSIZED_FRAME, `${msg.kind} of ${frame.length} bytes exceeds one frame (${MAX_FRAME_SIZE} bytes)`));
    }
    return new Promise<MessageOf<K>>((resolve, reject) => {
      // The promise's own resolve, no wrapper: onMessage checks the reply's kind.
      const p: Pending = { frame, expect, write, sentAt: performance.now(), timer: null, resolve: resolve as (reply: Message) => void, reject };
      if (!write) {
        p.timer = setTimeout(() => {
          this.pending.delete(reqId);
          reject(new FtcpError(ErrorCode.TIMEOUT, `no answer to ${msg.kind} from ${this.options.endpoint} within ${this.requestTimeoutMs} ms`));
        }, this.requestTimeoutMs);
      }
      this.pending.set(reqId, p);
      this.out.push(frame);
    });
  }

  private async receiveLoop(): Promise<void> {
    try {
      // receive() directly, not the socket's async iterator: two fewer promise
      // hops between an acknowledgement's arrival and the writer's resumption.
      while (!this.closed) {
        const frames = await this.socket.receive();
        const frame = frames[0];
        if (!frame) continue;
        let inner: Buffer[];
        try {
          inner = splitFrames(frame);
        } catch (err) {
          this.logger.log('warn', 'bad-frame-from-buffer', { error: String(err) });
          continue;
        }
        for (const f of inner) {
          let decoded;
          try {
            decoded = decodeFrame(f);
          } catch (err) {
            this.logger.log('warn', 'bad-frame-from-buffer', { error: String(err) });
            continue;
          }
          this.onMessage(decoded.reqId, decoded.msg);
        }
      }
    } catch (err) {
      if (!this.closed) this.logger.log('error', 'client-receive-failed', { error: String(err) });
    }
  }

  private onMessage(reqId: number, msg: Message): void {
    this.lastHeard = performance.now();
    if (msg.kind === 'ping') {
      this.probesAnswered++;
      this.out.push(encodeFrame({ kind: 'pong' }, reqId));
      this.emit('probe');
      return;
    }
    const sub = this.subscription;
    if (sub && reqId === sub.reqId) {
      if (msg.kind === 'records') {
        const entries = msg.entries.map((e) => ({ lsn: e.lsn, record: decodeRecord(e.record) }));
        sub.deliver({ kind: 'records', entries });
        return;
      }
      if (msg.kind === 'failed' || msg.kind === 'epoch') {
        sub.deliver(msg);
        this.emit(msg.kind, msg);
        return;
      }
      if (msg.kind === 'error') {
        sub.fail(new FtcpError(msg.code, msg.message));
        this.subscription = null;
        return;
      }
      if (msg.kind === 'subscribed') return;
    }
    const p = this.pending.get(reqId);
    if (!p) return;
    if (msg.kind === 'error') {
      // A write that reached the buffer before our hello after a reconnect is
      // resent once the hello is through; one refused for a full log waits
      // (below); anything else is final.
      if (p.write && msg.code === ErrorCode.NOT_WRITER && this.writerEpoch !== null) return;
      const err = new FtcpError(msg.code, msg.message);
      if (p.timer) clearTimeout(p.timer);
      if (p.write && msg.code === ErrorCode.CAPACITY) {
        // Not an answer: the record is not stable and must not be dropped
        // (its bytes would be a hole in the log). It waits for room.
        if (!p.refused) this.writesRefused++;
        p.refused = true;
        this.emit('write-refused', err);
        p.timer = setTimeout(() => {
          p.timer = null;
          if (this.pending.get(reqId) === p) this.out.push(p.frame);
        }, FULL_LOG_RETRY_MS);
        return;
      }
      this.pending.delete(reqId);
      if (msg.code === ErrorCode.STALE_EPOCH && p.write) this.fenced(msg.message);
      else if (p.write) {
        this.writesRefused++;
        this.emit('write-refused', err);
      }
      p.reject(err);
      return;
    }
    this.pending.delete(reqId);
    if (p.timer) clearTimeout(p.timer);
    if (msg.kind === p.expect) p.resolve(msg);
    else p.reject(new FtcpError(ErrorCode.MALFORMED_FRAME, `expected ${p.expect}, buffer answered ${msg.kind}`));
  }

  /** Another node took the epoch: nothing this client writes will be acknowledged again (invariant 4). */
  private fenced(reason: string): void {
    if (this.writerEpoch === null) return;
    this.writerEpoch = null;
    this.emit('fenced', reason);
    for (const [id, p] of this.pending) {
      if (!p.write) continue;
      this.pending.delete(id);
      p.reject(new FtcpError(ErrorCode.STALE_EPOCH, reason));
    }
  }

  private async watchEvents(): Promise<void> {
    try {
      for await (const ev of this.socket.events) {
        if (ev.type === 'connect') {
          const again = this.connected || this.reconnects > 0 || this.sawDisconnect;
          this.connected = true;
          if (again) void this.resume();
        } else if (ev.type === 'disconnect') {
          this.connected = false;
          this.sawDisconnect = true;
          this.emit('disconnect');
        } else if (ev.type === 'end') break;
      }
    } catch {
      // The socket closed.
    }
  }

  private sawDisconnect = false;

  /** After a reconnect: hello again, then resend unacknowledged writes in their order. */
  private async resume(): Promise<void> {
    this.reconnects++;
    this.emit('reconnect');
    try {
      if (this.writerEpoch !== null) {
        const ok = await this.request({ kind: 'hello', epoch: this.writerEpoch, role: Role.WRITER, node: this.options.node }, 'hello-ok');
        this.epochValue = ok.epoch;
      }
      for (const p of this.pending.values()) if (p.write) this.out.push(p.frame);
      const sub = this.subscription;
      if (sub) this.out.push(encodeFrame({ kind: 'subscribe', fromLsn: sub.receivedUpTo, window: sub.window, mode: sub.mode, node: this.options.node }, sub.reqId));
    } catch (err) {
      this.logger.log('warn', 'resume-failed', { error: String(err) });
      if (err instanceof FtcpError && err.code === ErrorCode.STALE_EPOCH) this.fenced(err.message);
    }
  }

  /**
   * Becomes the writer. `epoch` 0 claims the first epoch of a new buffer;
   * otherwise it must be the epoch this node owns (after a promotion).
   */
  async attachAsWriter(epoch = 0): Promise<{ epoch: number; headLsn: number }> {
    const ok = await this.request({ kind: 'hello', epoch, role: Role.WRITER, node: this.options.node }, 'hello-ok');
    this.epochValue = ok.epoch;
    this.writerEpoch = ok.epoch;
    this.heartbeat?.attach(ok.epoch);
    return { epoch: ok.epoch, headLsn: ok.headLsn };
  }

  /**
   * Starts answering the buffer's probes from a thread of its own (see
   * heartbeat.ts) for whatever epoch this client writes in: now if it is the
   * writer, else from its {@link attachAsWriter}. A busy event loop here then
   * no longer looks like a dead primary. Ends with {@link close}.
   * @param stallLimitMs the longest main-thread stall the heartbeat covers.
   */
  startHeartbeat(stallLimitMs?: number): Heartbeat {
    if (this.closed) throw new FtcpError(ErrorCode.CLOSED, 'client is closed');
    if (this.heartbeat) return this.heartbeat;
    const { endpoint, node, curve } = this.options;
    this.heartbeat = new Heartbeat({
      endpoint,
      node,
      logger: this.logger,
      ...(this.writerEpoch !== null ? { epoch: this.writerEpoch } : {}),
      ...(curve ? { curve } : {}),
      ...(stallLimitMs !== undefined ? { stallLimitMs } : {}),
    });
    return this.heartbeat;
  }

  /**
   * Takes the epoch after `fromEpoch` (fencing its primary) and returns where
   * every stream ends. Refused with STALE_EPOCH when `fromEpoch` is no longer
   * current: another node took over first.
   */
  async promote(fromEpoch: number): Promise<{ epoch: number; positions: Positions }> {
    const r = await this.request({ kind: 'promote', epoch: fromEpoch, node: this.options.node }, 'promoted');
    this.epochValue = r.epoch;
    return { epoch: r.epoch, positions: r.positions };
  }

  private write<K extends Message['kind']>(msg: Message, expect: K): Promise<MessageOf<K>> {
    if (this.writerEpoch === null) return Promise.reject(new FtcpError(ErrorCode.NOT_WRITER, 'call attachAsWriter() before writing'));
    return this.request(msg, expect, true);
  }

  /** Logs a connection record; resolves when it is stable (invariant 3: the SYN-ACK may then leave). */
  async writeConn(rec: Fields<ConnRecord>): Promise<number> {
    return (await this.write({ kind: 'conn', epoch: this.epochValue, ...rec }, 'ack-conn')).connId;
  }

  /** Logs a client segment; resolves with the connection's stable offset and stable sequence number. */
  // The writes below are not `async` on purpose: an async function keeps its
  // arguments (the payload, a batch's records) until the acknowledgement,
  // though the frame already holds their bytes; under a buffer slower than
  // its primary that backlog was a fifth of the NSW agent's time in GC.

  writeSegment(rec: Fields<SegmentRecord>): Promise<{ stableOffset: number; stableSeq: number }> {
    // Fields named, not spread: the hottest call of a primary.
    const msg: SegmentRecord = { kind: 'segment', epoch: this.epochValue, connId: rec.connId, offset: rec.offset, flags: rec.flags, payload: rec.payload };
    return this.write(msg, 'ack-segment').then((a) => ({ stableOffset: a.stableOffset, stableSeq: a.stableSeq }));
  }

  /** Logs a call record; resolves with the stream's highest contiguous stable call number. */
  writeCall(rec: Fields<CallRecord>): Promise<number> {
    return this.write({ kind: 'call', epoch: this.epochValue, ...rec }, 'ack-call').then((a) => a.contiguous);
  }

  /**
   * Logs consecutive calls of one stream as one record; resolves with the
   * stream's highest contiguous stable call number.
   */
  writeCalls(rec: Fields<CallBatchRecord>): Promise<number> {
    return this.write({ kind: 'call-batch', epoch: this.epochValue, ...rec }, 'ack-call').then((a) => a.contiguous);
  }

  /** Logs the client's ack and window high-water marks. */
  async writeClientAck(rec: Fields<ClientAckRecord>): Promise<void> {
    await this.write({ kind: 'client-ack', epoch: this.epochValue, ...rec }, 'ack-client');
  }

  /** Logs that a connection is over. */
  async writeClose(rec: Fields<CloseRecord>): Promise<void> {
    await this.write({ kind: 'close', epoch: this.epochValue, ...rec }, 'ack-close');
  }

  /** Call records of a stream from `fromCallNo`, at most `max`. */
  async readCalls(stream: string, fromCallNo: number, max = 1000): Promise<{ callNo: number; data: Buffer }[]> {
    return (await this.request({ kind: 'read-calls', stream, fromCallNo, max }, 'calls')).entries;
  }

  /** Exactly `length` stable bytes of a connection's instream from `offset`. */
  async readInstream(connId: number, offset: number, length: number): Promise<Buffer> {
    if (length <= READ_PIECE) return (await this.request({ kind: 'read-instream', connId, offset, length }, 'instream')).data;
    // One reply must fit one frame: a longer read goes in pieces, all in flight at once.
    const pieces: Promise<Buffer>[] = [];
    for (let at = 0; at < length; at += READ_PIECE) pieces.push(this.readInstream(connId, offset + at, Math.min(READ_PIECE, length - at)));
    return Buffer.concat(await Promise.all(pieces), length);
  }

  /** The buffer's status snapshot. */
  async status(): Promise<Record<string, unknown>> {
    return JSON.parse((await this.request({ kind: 'status' }, 'status-reply')).json) as Record<string, unknown>;
  }

  /**
   * Sends this node's status (a JSON object) to the buffer, which shows the
   * latest one of every node in its status. No reply; send it periodically.
   */
  report(role: 'primary' | 'backup' | string, status: Record<string, unknown>): void {
    this.out.push(encodeFrame({ kind: 'report', node: this.options.node, role, json: JSON.stringify(status) }));
  }

  /** Milliseconds since anything arrived from the buffer (replies, pushes, probes); 0 before connecting. */
  silentForMs(): number {
    return this.lastHeard === 0 ? 0 : performance.now() - this.lastHeard;
  }

  /** Round trip to the buffer in ms. */
  async ping(): Promise<number> {
    const t0 = performance.now();
    await this.request({ kind: 'ping' }, 'pong');
    return performance.now() - t0;
  }

  /**
   * Streams the log from `fromLsn` as it grows, plus failure and epoch events.
   * A named `hot` or `cold` subscription registers this node as a backup:
   * retention then keeps what it has not consumed.
   */
  subscribe(opts: { fromLsn?: number; window?: number; mode?: 'hot' | 'cold' | 'observer' } = {}): Subscription {
    if (this.subscription) throw new FtcpError(ErrorCode.CONFLICT, 'this client already has a subscription');
    const mode = opts.mode === 'cold' ? BackupMode.COLD : opts.mode === 'observer' ? BackupMode.OBSERVER : BackupMode.HOT;
    const reqId = this.allocReqId();
    const sub = new Subscription(this, reqId, opts.fromLsn ?? 0, opts.window ?? 4096, mode);
    this.subscription = sub;
    this.out.push(encodeFrame({ kind: 'subscribe', fromLsn: sub.nextLsn, window: sub.window, mode, node: this.options.node }, reqId));
    return sub;
  }

  /** @internal Tells the buffer the subscription consumed everything below `lsn`. */
  acknowledgeConsumed(lsn: number): void {
    this.out.push(encodeFrame({ kind: 'consumed', lsn }));
  }

  /** Sends raw bytes as one frame: for tests of the buffer's handling of bad input. */
  sendRaw(frame: Buffer): void {
    this.out.push(frame);
  }

  /**
   * Closes the socket; pending promises reject with FTCP_ERR_CLOSED. Resolves
   * once the heartbeat thread, if one was started, has ended (within 1 s): a
   * process that exits under that thread aborts (ZeroMQ's teardown throws),
   * so a node awaits this before it exits.
   */
  close(): Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new FtcpError(ErrorCode.CLOSED, 'client closed'));
    }
    this.pending.clear();
    this.subscription?.end();
    this.closing = this.heartbeat?.stop() ?? Promise.resolve();
    this.out.close();
    this.socket.close();
    return this.closing;
  }
}
