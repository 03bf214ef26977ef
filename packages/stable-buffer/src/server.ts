/**
 * `StableBufferServer`: the standalone stable buffer (FT-TCP 2.3, 3.10). One
 * ZeroMQ ROUTER socket serves the primary (one ordered channel of writes, in
 * arrival order), backups (subscriptions, reads, promotion) and status
 * queries. Embeddable; `ftcp buffer serve` is a thin command over it.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Router } from 'zeromq';
import { z } from 'zod';
import { allowCurveClients, forgetCurveDomain } from './curve.js';
import { Detector, type Clock } from './detector/detector.js';
import { ErrorCode, FtcpError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import {
  BackupMode,
  MAX_FRAME_SIZE,
  Role,
  decodeFrame,
  encodeFrame,
  isRecord,
  peekReqId,
  splitFrames,
  recordBytesOfFrame,
  type Message,
} from './protocol/messages.js';
import { endpointProblem } from './endpoint.js';
import { SendQueue } from './sendqueue.js';
import { Store } from './store/store.js';
import { RecordRing } from './store/ring.js';

/** Options of a buffer server, validated at the edge. */
export const serverOptionsSchema = z.object({
  /** ZeroMQ endpoint to bind, e.g. tcp://10.0.0.2:7400 (port 0 picks a free one). */
  listen: z.string().superRefine((text, ctx) => {
    const problem = endpointProblem(text, 'bind');
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  }),
  dataDir: z.string().min(1),
  durability: z.enum(['memory', 'commit', 'fsync']).default('commit'),
  probeIntervalMs: z.number().int().min(1).max(60_000).default(10),
  failureTimeoutMs: z.number().int().min(1).max(600_000).default(30),
  maxLogBytes: z.number().int().positive().default(8 * 1024 ** 3),
  /** What collection may remove (see Retention in the store): `all` keeps what a later backup replays. */
  retain: z.enum(['all', 'consumed']).default('all'),
  collectIntervalMs: z.number().int().min(10).default(1000),
  curve: z
    .object({
      publicKey: z.string().length(40),
      secretKey: z.string().length(40),
      clientPublicKeys: z.array(z.string().length(40)).min(1),
    })
    .optional(),
});

export type ServerOptions = z.input<typeof serverOptionsSchema> & { logger?: Logger; clock?: Clock };

interface Subscription {
  reqId: number;
  node: string;
  mode: number;
  /** Next LSN to send. */
  cursor: number;
  /** Every LSN below this was consumed. */
  consumed: number;
  window: number;
  pumping: boolean;
}

interface Peer {
  id: Buffer;
  key: string;
  role: number;
  node: string;
  sub: Subscription | null;
}

/** Counters an operator reads through `ftcp status`. */
export interface ServerCounters {
  framesIn: number;
  framesOut: number;
  records: Record<string, number>;
  duplicates: number;
  errors: Record<string, number>;
  probes: number;
  failuresDeclared: number;
  /** Verdicts the primary outlived: it spoke again before anything was promoted over it. */
  failuresRetracted: number;
}

/** Most nodes whose reports the buffer keeps, and the largest report. */
const MAX_REPORTS = 64;
const MAX_REPORT_BYTES = 64 * 1024;
const reportSchema = z.record(z.unknown());

/** How many recent records stay in memory for live subscribers. */
const TAIL_RECORDS = 16_384;
const TAIL_BYTES = 64 * 1024 * 1024;
const PUSH_BATCH_RECORDS = 256;
const PUSH_BATCH_BYTES = 1024 * 1024;

/** How often a full log is logged again while writes keep being refused. */
const LOG_FULL_REPEAT_MS = 10_000;

/** The largest ZeroMQ message the buffer takes in to answer with an error (see maxMessageSize). */
export const MAX_RECEIVED_MESSAGE = 64 * 1024 * 1024;

export class StableBufferServer extends EventEmitter {
  readonly counters: ServerCounters = { framesIn: 0, framesOut: 0, records: {}, duplicates: 0, errors: {}, probes: 0, failuresDeclared: 0, failuresRetracted: 0 };
  private readonly peers = new Map<string, Peer>();
  /** Latest status report of each node (primary and backup agents send them). */
  private readonly reports = new Map<string, { role: string; at: number; report: Record<string, unknown> }>();
  private readonly out: SendQueue;
  private readonly detector: Detector;
  private writer: Peer | null = null;
  /** The writer's heartbeat connection (Role.HEARTBEAT): its answers count as the writer's. */
  private heartbeat: Peer | null = null;
  private lastPeer: Peer | null = null;
  private logFullSaidAt = -Infinity;
  /** Recent records, so live subscribers are served without reading LMDB. */
  private readonly tail = new RecordRing(TAIL_RECORDS, TAIL_BYTES);
  private closed = false;
  private collectTimer: NodeJS.Timeout | null = null;
  private loop: Promise<void> | null = null;
  private probeSeq = 0;
  private readonly logger: Logger;

  private constructor(
    private readonly socket: Router,
    readonly store: Store,
    readonly options: z.output<typeof serverOptionsSchema>,
    readonly endpoint: string,
    logger: Logger,
    clock: Clock | undefined,
    private readonly zapDomain: string | null,
  ) {
    super();
    this.logger = logger;
    this.out = new SendQueue(socket);
    this.detector = new Detector({
      probeIntervalMs: options.probeIntervalMs,
      failureTimeoutMs: options.failureTimeoutMs,
      ...(clock ? { clock } : {}),
      onProbe: () => this.probe(),
      onFailed: (silent) => this.declareFailed(silent),
      onHeardAfterFailure: (since) => {
        this.counters.failuresRetracted++;
        this.logger.log('warn', 'primary-heard-after-failure', { node: this.store.owner, epoch: this.store.epoch, sinceVerdictMs: Math.round(since) });
      },
    });
  }

  /** Opens the store, binds the socket and starts serving. */
  static async start(opts: ServerOptions): Promise<StableBufferServer> {
    const parsed = serverOptionsSchema.safeParse(opts);
    if (!parsed.success) {
      throw new FtcpError(ErrorCode.BAD_CONFIG, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    }
    const options = parsed.data;
    const logger = opts.logger ?? silentLogger;
    const store = await Store.open({ dataDir: options.dataDir, durability: options.durability, maxLogBytes: options.maxLogBytes, retain: options.retain });
    let zapDomain: string | null = null;
    const socket = new Router({
      mandatory: true,
      linger: 0,
      // libzmq drops the connection of a peer that sends more than this, before
      // the message reaches us; up to it, our own size check answers with
      // OVERSIZED_FRAME. Far above MAX_FRAME_SIZE so that a peer that got the
      // limit wrong hears why; bounded so that no peer makes us allocate
      // gigabytes for one message.
      maxMessageSize: MAX_RECEIVED_MESSAGE,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
    });
    if (options.curve) {
      zapDomain = `ftcp-${randomBytes(6).toString('hex')}`;
      await allowCurveClients(zapDomain, options.curve.clientPublicKeys);
      socket.zapDomain = zapDomain;
      socket.curveServer = true;
      socket.curveSecretKey = options.curve.secretKey;
      socket.curvePublicKey = options.curve.publicKey;
    }
    try {
      await socket.bind(options.listen);
    } catch (err) {
      socket.close();
      await store.close();
      throw new FtcpError(ErrorCode.LISTEN, `cannot listen on ${options.listen}: ${(err as Error).message}`, { cause: err });
    }
    const server = new StableBufferServer(socket, store, options, socket.lastEndpoint ?? options.listen, logger, opts.clock, zapDomain);
    server.loop = server.serve();
    server.collectTimer = setInterval(() => void server.collect(), options.collectIntervalMs);
    server.collectTimer.unref();
    logger.log('info', 'listening', {
      endpoint: server.endpoint,
      dataDir: options.dataDir,
      durability: options.durability,
      epoch: store.epoch,
      headLsn: store.headLsn,
      curve: Boolean(options.curve),
    });
    return server;
  }

  private async serve(): Promise<void> {
    try {
      // receive() directly, not the socket's async iterator: two fewer promise
      // hops on every message's way in.
      while (!this.closed) {
        const frames = await this.socket.receive();
        const id = frames[0]!;
        const frame = frames[1];
        if (frames.length !== 2 || !frame) {
          this.sendError(id, new FtcpError(ErrorCode.MALFORMED_FRAME, `expected one frame per message, got ${frames.length - 1}`), 0);
          continue;
        }
        let inner: Buffer[];
        try {
          inner = splitFrames(frame);
        } catch (err) {
          this.sendError(id, err, peekReqId(frame));
          continue;
        }
        for (const f of inner) {
          this.counters.framesIn++;
          // Frames are applied strictly in arrival order: the rare request
          // that must finish first (hello, promote) holds back the rest.
          const pending = this.receive(id, f);
          if (pending) await pending;
        }
      }
    } catch (err) {
      if (!this.closed) this.logger.log('error', 'receive-loop-failed', { error: String(err) });
    }
  }

  private send(peer: Buffer, msg: Message, reqId: number): void {
    this.counters.framesOut++;
    this.out.push(encodeFrame(msg, reqId), peer);
  }

  private sendError(peer: Buffer, err: unknown, reqId: number): void {
    const e = err instanceof FtcpError ? err : new FtcpError(ErrorCode.INTERNAL, `internal error: ${String(err)}`, { cause: err });
    this.counters.errors[e.code] = (this.counters.errors[e.code] ?? 0) + 1;
    if (e.code === ErrorCode.INTERNAL) this.logger.log('error', 'internal-error', { error: String(err), stack: (err as Error).stack });
    if (e.code === ErrorCode.CAPACITY) this.logFull(e.message);
    this.send(peer, { kind: 'error', code: e.code, message: e.message }, reqId);
  }

  /** A full log stalls the service: say so, once per LOG_FULL_REPEAT_MS, not once per refused write. */
  private logFull(message: string): void {
    const now = performance.now();
    if (now - this.logFullSaidAt < LOG_FULL_REPEAT_MS) return;
    this.logFullSaidAt = now;
    this.logger.log('error', 'log-full', {
      error: message,
      refused: this.counters.errors[ErrorCode.CAPACITY],
      maxLogBytes: this.options.maxLogBytes,
      hint: 'writes are refused until records are collected: raise --max-log-bytes, or use --retain consumed',
    });
  }

  private peerFor(id: Buffer): Peer {
    // Nearly every message comes from the peer of the one before (the writer).
    const last = this.lastPeer;
    if (last !== null && last.id.equals(id)) return last;
    const key = id.toString('hex');
    let p = this.peers.get(key);
    if (!p) {
      p = { id, key, role: 0, node: '', sub: null };
      this.peers.set(key, p);
    }
    this.lastPeer = p;
    return p;
  }

  /** Handles one message; returns a promise only when later messages must wait for it. */
  private receive(id: Buffer, frame: Buffer): Promise<void> | null {
    let reqId = peekReqId(frame);
    try {
      const decoded = decodeFrame(frame);
      reqId = decoded.reqId;
      const peer = this.peerFor(id);
      if (peer === this.writer || peer === this.heartbeat) this.detector.heard();
      return this.dispatch(peer, decoded.msg, reqId, frame);
    } catch (err) {
      this.sendError(id, err, reqId);
      return null;
    }
  }

  private dispatch(peer: Peer, msg: Message, reqId: number, frame: Buffer): Promise<void> | null {
    if (isRecord(msg)) {
      this.write(peer, msg, reqId, frame);
      return null;
    }
    switch (msg.kind) {
      case 'hello':
        return this.guard(peer, reqId, () => this.hello(peer, msg.epoch, msg.role, msg.node, reqId));
      case 'promote':
        return this.guard(peer, reqId, () => this.promote(peer, msg.epoch, msg.node, reqId));
      case 'ping':
        this.send(peer.id, { kind: 'pong' }, reqId);
        return null;
      case 'pong':
        return null;
      case 'subscribe':
        this.subscribe(peer, msg.fromLsn, msg.window, msg.mode, msg.node, reqId);
        return null;
      case 'consumed':
        this.consume(peer, msg.lsn);
        return null;
      case 'read-calls':
        void this.guard(peer, reqId, async () => {
          const entries = await this.store.readCalls(msg.stream, msg.fromCallNo, Math.min(msg.max, 10_000));
          this.send(peer.id, { kind: 'calls', stream: msg.stream, entries }, reqId);
        });
        return null;
      case 'read-instream':
        void this.guard(peer, reqId, async () => {
          if (msg.length > MAX_FRAME_SIZE - 64) {
            throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `read of ${msg.length} bytes exceeds one frame; read in pieces`);
          }
          const data = await this.store.readInstream(msg.connId, msg.offset, msg.length);
          this.send(peer.id, { kind: 'instream', connId: msg.connId, offset: msg.offset, data }, reqId);
        });
        return null;
      case 'status':
        this.send(peer.id, { kind: 'status-reply', json: JSON.stringify(this.status()) }, reqId);
        return null;
      case 'report':
        this.report(msg.node, msg.role, msg.json);
        return null;
      default:
        throw new FtcpError(ErrorCode.UNKNOWN_TYPE, `${msg.kind} is not a request`);
    }
  }

  private async guard(peer: Peer, reqId: number, fn: () => Promise<void> | void): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.sendError(peer.id, err, reqId);
    }
  }

  private async hello(peer: Peer, epoch: number, role: number, node: string, reqId: number): Promise<void> {
    peer.role = role;
    peer.node = node;
    if (role === Role.WRITER) {
      if (this.store.epoch === 0 && epoch === 0) {
        // The first primary claims epoch 1 (durably) and becomes the writer.
        await this.store.setEpoch(1, node);
      } else if (epoch !== this.store.epoch || node !== this.store.owner) {
        throw new FtcpError(
          ErrorCode.STALE_EPOCH,
          `node ${node} asked for epoch ${epoch}; epoch ${this.store.epoch} belongs to ${this.store.owner || 'nobody'}`,
        );
      }
      this.writer = peer;
      this.detector.start();
      this.logger.log('info', 'writer-attached', { node, epoch: this.store.epoch });
    } else if (role === Role.HEARTBEAT) {
      // Only the owner of the current epoch: a fenced primary's heartbeat must
      // not keep the detector from seeing its successor fall silent.
      if (epoch === 0 || epoch !== this.store.epoch || node !== this.store.owner) {
        throw new FtcpError(
          ErrorCode.STALE_EPOCH,
          `heartbeat of node ${node} for epoch ${epoch}; epoch ${this.store.epoch} belongs to ${this.store.owner || 'nobody'}`,
        );
      }
      this.heartbeat = peer;
      // This hello is the heartbeat's first word (receive() did not know the peer yet).
      this.detector.heard();
      this.logger.log('info', 'heartbeat-attached', { node, epoch });
    }
    this.send(peer.id, { kind: 'hello-ok', epoch: this.store.epoch, headLsn: this.store.headLsn }, reqId);
  }

  private async promote(peer: Peer, fromEpoch: number, node: string, reqId: number): Promise<void> {
    // Compare and set: of two backups that saw the same primary fail, the
    // second finds the epoch taken and stays out, instead of fencing the first.
    if (fromEpoch !== this.store.epoch) {
      throw new FtcpError(
        ErrorCode.STALE_EPOCH,
        `node ${node} asked to take over from epoch ${fromEpoch}; the current epoch is ${this.store.epoch}, owned by ${this.store.owner || 'nobody'}`,
      );
    }
    const epoch = this.store.epoch + 1;
    await this.store.setEpoch(epoch, node);
    // Fence: the old writer's next write carries an older epoch and is refused.
    this.writer = null;
    this.heartbeat = null;
    this.detector.stop();
    this.store.unregisterBackup(node);
    peer.node = node;
    this.logger.log('info', 'promoted', { node, epoch, headLsn: this.store.headLsn });
    this.send(peer.id, { kind: 'promoted', epoch, positions: this.store.positions() }, reqId);
    this.broadcast({ kind: 'epoch', epoch, node });
    this.emit('promoted', { epoch, node });
  }

  private write(peer: Peer, rec: Message & { epoch: number }, reqId: number, frame: Buffer): void {
    try {
      if (rec.epoch !== this.store.epoch) {
        throw new FtcpError(ErrorCode.STALE_EPOCH, `write from epoch ${rec.epoch}; the current epoch is ${this.store.epoch}`);
      }
      if (peer !== this.writer) {
        throw new FtcpError(ErrorCode.NOT_WRITER, 'writes need a writer hello for the current epoch on this connection first');
      }
      const res = this.store.append(rec as Parameters<Store['append']>[0], recordBytesOfFrame(frame));
      // The acknowledgement first when it is due now: the rest can wait for it.
      if (res.stable === null) this.send(peer.id, res.ack, reqId);
      else res.stable.then(
        () => this.send(peer.id, res.ack, reqId),
        (err) => this.sendError(peer.id, new FtcpError(ErrorCode.STORE, `store write failed: ${String(err)}`, { cause: err }), reqId),
      );
      this.counters.records[rec.kind] = (this.counters.records[rec.kind] ?? 0) + 1;
      if (res.lsn === null) this.counters.duplicates++;
      else this.pushTail(res.lsn, res.bytes!);
    } catch (err) {
      this.sendError(peer.id, err, reqId);
    }
  }

  private pushTail(lsn: number, bytes: Buffer): void {
    this.tail.push(lsn, bytes);
    for (const p of this.peers.values()) if (p.sub) void this.pump(p);
  }

  private subscribe(peer: Peer, fromLsn: number, window: number, mode: number, node: string, reqId: number): void {
    if (fromLsn < this.store.firstLsn) {
      this.sendError(
        peer.id,
        new FtcpError(ErrorCode.LOG_TRUNCATED, `records below ${this.store.firstLsn} were collected; cannot replay from ${fromLsn}`),
        reqId,
      );
      return;
    }
    peer.node = node;
    if (mode !== BackupMode.OBSERVER) this.store.registerBackup(node, mode, fromLsn);
    peer.sub = { reqId, node, mode, cursor: fromLsn, consumed: fromLsn, window, pumping: false };
    this.send(peer.id, { kind: 'subscribed', firstLsn: this.store.firstLsn, headLsn: this.store.headLsn }, reqId);
    this.logger.log('info', 'subscribed', { node, mode, fromLsn });
    // A backup that (re)subscribes after the verdict must not wait for one that already came.
    if (this.detector.state === 'failed') {
      this.send(peer.id, { kind: 'failed', epoch: this.store.epoch, node: this.store.owner || 'unknown', positions: this.store.positions() }, reqId);
    }
    void this.pump(peer);
  }

  private consume(peer: Peer, lsn: number): void {
    const sub = peer.sub;
    if (!sub) return;
    sub.consumed = Math.max(sub.consumed, Math.min(lsn, sub.cursor));
    if (sub.mode !== BackupMode.OBSERVER) this.store.consumed(sub.node, sub.consumed);
    void this.pump(peer);
  }

  /** Streams records to a subscriber while it has window left. */
  private async pump(peer: Peer): Promise<void> {
    const sub = peer.sub;
    if (!sub || sub.pumping) return;
    sub.pumping = true;
    try {
      while (!this.closed && peer.sub === sub && sub.cursor < this.store.headLsn && sub.cursor - sub.consumed < sub.window) {
        const room = Math.min(PUSH_BATCH_RECORDS, sub.window - (sub.cursor - sub.consumed));
        let entries: { lsn: number; record: Buffer }[];
        if (this.tail.has(sub.cursor)) {
          entries = [];
          let bytes = 0;
          for (let lsn = sub.cursor; this.tail.has(lsn) && entries.length < room && bytes < PUSH_BATCH_BYTES; lsn++) {
            const record = this.tail.get(lsn);
            entries.push({ lsn, record });
            bytes += record.length;
          }
        } else {
          entries = await this.store.readLog(sub.cursor, room, PUSH_BATCH_BYTES);
        }
        if (entries.length === 0) {
          // A hole left by collection: skip to what exists.
          sub.cursor = this.store.headLsn;
          break;
        }
        sub.cursor = entries[entries.length - 1]!.lsn + 1;
        this.send(peer.id, { kind: 'records', entries }, sub.reqId);
      }
    } catch (err) {
      this.sendError(peer.id, err, sub.reqId);
      peer.sub = null;
    } finally {
      sub.pumping = false;
    }
  }

  private report(node: string, role: string, json: string): void {
    if (json.length > MAX_REPORT_BYTES) throw new FtcpError(ErrorCode.OVERSIZED_FRAME, `report of ${json.length} bytes exceeds ${MAX_REPORT_BYTES}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      throw new FtcpError(ErrorCode.MALFORMED_FRAME, `report from ${node} is not JSON`);
    }
    const ok = reportSchema.safeParse(parsed);
    if (!ok.success) throw new FtcpError(ErrorCode.MALFORMED_FRAME, `report from ${node} is not a JSON object`);
    if (!this.reports.has(node) && this.reports.size >= MAX_REPORTS) {
      // Forget the stalest node rather than grow without bound.
      let oldest: string | null = null;
      for (const [n, r] of this.reports) if (oldest === null || r.at < this.reports.get(oldest)!.at) oldest = n;
      if (oldest !== null) this.reports.delete(oldest);
    }
    this.reports.set(node, { role, at: Date.now(), report: ok.data });
  }

  private broadcast(msg: Message): void {
    for (const p of this.peers.values()) if (p.sub) this.send(p.id, msg, p.sub.reqId);
  }

  private probe(): void {
    this.counters.probes++;
    const reqId = 0x80000000 | (this.probeSeq++ & 0x7fffffff);
    if (this.writer) this.send(this.writer.id, { kind: 'ping' }, reqId);
    if (this.heartbeat) this.send(this.heartbeat.id, { kind: 'ping' }, reqId);
  }

  private declareFailed(silentMs: number): void {
    this.counters.failuresDeclared++;
    const node = this.store.owner;
    const positions = this.store.positions();
    this.logger.log('warn', 'primary-failed', { node, epoch: this.store.epoch, silentMs: Math.round(silentMs), headLsn: positions.headLsn });
    this.broadcast({ kind: 'failed', epoch: this.store.epoch, node: node || 'unknown', positions });
    this.emit('failed', { epoch: this.store.epoch, node, positions });
  }

  private async collect(): Promise<void> {
    try {
      const removed = await this.store.collect();
      if (removed > 0) this.logger.log('debug', 'collected', { removed, firstLsn: this.store.firstLsn });
    } catch (err) {
      this.logger.log('error', 'collect-failed', { error: String(err) });
    }
  }

  /** A JSON-able snapshot for `ftcp status`. */
  status(): Record<string, unknown> {
    return {
      endpoint: this.endpoint,
      durability: this.options.durability,
      epoch: this.store.epoch,
      owner: this.store.owner,
      writerAttached: this.writer !== null,
      heartbeatAttached: this.heartbeat !== null,
      detector: { state: this.detector.state, silentForMs: Math.round(this.detector.silentFor()), probes: this.detector.probes, misses: this.detector.misses, falseVerdicts: this.detector.falseVerdicts },
      headLsn: this.store.headLsn,
      firstLsn: this.store.firstLsn,
      retainedBytes: this.store.retainedBytes,
      maxLogBytes: this.options.maxLogBytes,
      connections: this.store.connections(),
      streams: this.store.positions().streams,
      backups: [...this.store.registeredBackups].map(([node, b]) => ({ node, mode: b.mode, consumed: b.consumed, lag: this.store.headLsn - b.consumed })),
      nodes: [...this.reports].map(([node, r]) => ({ node, role: r.role, ageMs: Date.now() - r.at, report: r.report })),
      counters: this.counters,
    };
  }

  /** Stops serving, flushes the store and releases the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.detector.stop();
    if (this.collectTimer) clearInterval(this.collectTimer);
    this.out.close();
    this.socket.close();
    await this.loop?.catch(() => {});
    if (this.zapDomain) forgetCurveDomain(this.zapDomain);
    await this.store.close();
    this.logger.log('info', 'closed', {});
  }
}
