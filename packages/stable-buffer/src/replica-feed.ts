/**
 * What a backup needs from the buffer while its replica plays back
 * (FT-TCP 3.7): call records by stream and call number, the client's bytes of
 * each connection, the client's acknowledgements (to trim the replica's send
 * buffers), and the failure event. `ReplicaFeed` follows one subscription and
 * answers blocking reads: a replica that gets ahead of the log waits.
 *
 * Memory is bounded: while unread call records exceed `maxHeldBytes` the feed
 * stops pulling, so the buffer stops pushing (the subscription's window); a
 * cold backup that rolls forward later reads at its own pace.
 */
import { EventEmitter } from 'node:events';
import type { StableBufferClient, Subscription, SubscriptionEvent } from './client.js';
import { ErrorCode, FtcpError } from './errors.js';
import { SegFlag, type ConnRecord, type Positions } from './protocol/messages.js';
import { Coverage } from './store/coverage.js';

/** Most client bytes one instream request of a replica fetches ahead. */
const READ_AHEAD = 1024 * 1024;

/** Most calls, and about the most bytes, one batch record carries. */
const BATCH_CALLS = 1024;
const BATCH_BYTES = 512 * 1024;

interface StreamBatch {
  first: number;
  datas: Buffer[];
  bytes: number;
  /** What every append of the batch returns. */
  done: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * Appends a primary's call records. Each promise resolves once its record
 * and every earlier one of its stream are stable. Calls appended in one turn
 * of the event loop leave as one batch record per stream: a server makes far
 * more calls than the buffer could take one record at a time. The calls of a
 * batch share one promise, as they become stable together: a promise and its
 * handlers per call cost the agent more than the rest of its record path.
 */
export class CallWriter {
  private readonly batches = new Map<string, StreamBatch>();
  private scheduled = false;
  /** Batch records sent, and calls in them (for status and the benchmark). */
  batchesSent = 0;
  callsSent = 0;

  constructor(private readonly client: StableBufferClient) {}

  /** Appends call `callNo` of `stream`; resolves when it and every earlier call of the stream are stable. */
  append(stream: string, callNo: number, data: Buffer): Promise<void> {
    let b = this.batches.get(stream);
    if (b && (b.first + b.datas.length !== callNo || b.datas.length >= BATCH_CALLS || b.bytes >= BATCH_BYTES)) {
      this.send(stream, b);
      b = undefined;
    }
    if (!b) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      b = { first: callNo, datas: [], bytes: 0, done, resolve, reject };
      this.batches.set(stream, b);
    }
    b.datas.push(data);
    b.bytes += data.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    return b.done;
  }

  private flush(): void {
    this.scheduled = false;
    for (const [stream, b] of this.batches) this.send(stream, b);
  }

  private send(stream: string, b: StreamBatch): void {
    this.batches.delete(stream);
    this.batchesSent++;
    this.callsSent += b.datas.length;
    const sent = b.datas.length === 1 ? this.client.writeCall({ stream, callNo: b.first, data: b.datas[0]! }) : this.client.writeCalls({ stream, firstCallNo: b.first, datas: b.datas });
    // Handlers that keep only what they need: the batch's records (in the
    // frame already) go now, not at the acknowledgement. Kept until then, a
    // buffer slower than its primary piles them up for the garbage collector
    // to copy again and again (a fifth of the agent's time).
    const { first, resolve, reject } = b;
    const last = first + b.datas.length - 1;
    sent.then(
      (contiguous) => {
        if (contiguous >= last) resolve();
        // One ordered channel makes this impossible unless a call was skipped.
        else reject(new FtcpError(ErrorCode.CONFLICT, `stream ${stream}: calls ${first} to ${last} stored but only calls up to ${contiguous} are contiguous`));
      },
      reject,
    );
  }
}

interface CallWaiter {
  callNo: number;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

interface ConnState {
  rec: ConnRecord;
  /** Client bytes the log holds; its contiguous end is the stable offset. */
  coverage: Coverage;
  /** The client's FIN offset, once logged. */
  finOffset: number | null;
  clientAckOffset: number;
  /** The client's last logged window (bytes) and highest TSecr. */
  clientWindow: number;
  clientTsEcr: number;
  closed: boolean;
  /** Stable bytes fetched ahead of the replica's reads. */
  window: { offset: number; bytes: Buffer } | null;
}

export interface ReplicaFeedOptions {
  /** Unread call-record bytes above which the feed stops pulling. Default 64 MiB. */
  maxHeldBytes?: number;
}

/** The failure event, as the feed reports it. */
export interface PrimaryFailure {
  epoch: number;
  node: string;
  positions: Positions;
}

/** Dotted quad to the host-order u32 the records carry. */
function ipv4ToU32(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `${address} is not an IPv4 address`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export class ReplicaFeed extends EventEmitter {
  private readonly calls = new Map<string, Map<number, Buffer>>();
  /** Per stream, the highest call already handed out (a replica thread reads its calls in order). */
  private readonly readUpTo = new Map<string, number>();
  private readonly callWaiters = new Map<string, Set<CallWaiter>>();
  private readonly conns = new Map<number, ConnState>();
  private readonly byteWaiters = new Set<() => void>();
  private heldBytes = 0;
  private resumePull: (() => void) | null = null;
  private endedWith: Error | null = null;
  private running: Promise<void>;
  private readonly maxHeldBytes: number;
  /** The failure event, once the buffer sent one. */
  failure: PrimaryFailure | null = null;
  /** Next LSN the feed has not applied. */
  appliedUpTo = 0;
  /**
   * What the feed has fetched from the buffer: log records applied from the
   * subscription (from its first LSN on), the bytes of call data they carry
   * (single and batched calls) and the client bytes of their segment records
   * (as logged, retransmitted overlaps included), and the client bytes read
   * again from the buffer for the replica's reads ({@link readInstream}). A
   * cold backup reports the call and segment bytes at the promotion's head
   * as the size of the log its roll-forward replayed.
   */
  readonly fetched = { records: 0, callBytes: 0, segmentBytes: 0, instreamBytes: 0 };

  constructor(
    private readonly client: StableBufferClient,
    private readonly sub: Subscription,
    options: ReplicaFeedOptions = {},
  ) {
    super();
    this.maxHeldBytes = options.maxHeldBytes ?? 64 * 1024 * 1024;
    this.running = this.follow();
  }

  private async follow(): Promise<void> {
    try {
      for await (const ev of this.sub) {
        this.apply(ev);
        while (this.heldBytes > this.maxHeldBytes) await new Promise<void>((r) => (this.resumePull = r));
      }
      this.end(new FtcpError(ErrorCode.CLOSED, 'the subscription ended'));
    } catch (err) {
      this.end(err as Error);
    }
  }

  private apply(ev: SubscriptionEvent): void {
    if (ev.kind === 'failed') {
      this.failure = { epoch: ev.epoch, node: ev.node, positions: ev.positions };
      this.emit('failed', this.failure);
      return;
    }
    if (ev.kind === 'epoch') {
      this.emit('epoch', ev);
      return;
    }
    for (const { lsn, record: r } of ev.entries) {
      this.appliedUpTo = lsn + 1;
      this.fetched.records++;
      switch (r.kind) {
        case 'call':
          this.fetched.callBytes += r.data.length;
          this.addCall(r.stream, r.callNo, r.data);
          break;
        case 'call-batch':
          r.datas.forEach((d, i) => {
            this.fetched.callBytes += d.length;
            this.addCall(r.stream, r.firstCallNo + i, d);
          });
          break;
        case 'conn':
          if (!this.conns.has(r.connId)) this.conns.set(r.connId, { rec: r, coverage: new Coverage(), finOffset: null, clientAckOffset: 0, clientWindow: 0, clientTsEcr: 0, closed: false, window: null });
          this.emit('conn', r);
          break;
        case 'segment': {
          this.fetched.segmentBytes += r.payload.length;
          const c = this.conns.get(r.connId);
          if (!c) break;
          c.coverage.add(r.offset, r.offset + r.payload.length);
          if (r.flags & SegFlag.FIN) c.finOffset = r.offset + r.payload.length;
          this.wakeBytes();
          break;
        }
        case 'client-ack': {
          const c = this.conns.get(r.connId);
          if (!c) break;
          c.clientWindow = r.window;
          // TSvals wrap (RFC 7323 5.2): newer means ahead by less than 2^31.
          if (((r.tsEcr - c.clientTsEcr) | 0) > 0 || c.clientTsEcr === 0) c.clientTsEcr = r.tsEcr;
          if (r.ackOffset > c.clientAckOffset) {
            c.clientAckOffset = r.ackOffset;
            this.emit('client-ack', r.connId, r.ackOffset, r.window);
          }
          break;
        }
        case 'close': {
          const c = this.conns.get(r.connId);
          if (c) c.closed = true;
          this.emit('close', r.connId, r.reason);
          break;
        }
      }
    }
  }

  private addCall(stream: string, callNo: number, data: Buffer): void {
    const waiters = this.callWaiters.get(stream);
    if (waiters) {
      for (const w of waiters) {
        if (w.callNo === callNo) {
          waiters.delete(w);
          this.delivered(stream, callNo);
          w.resolve(data);
          return;
        }
      }
    }
    // Fetched from the buffer while the feed was paused: arriving now, it is old news.
    if (callNo <= (this.readUpTo.get(stream) ?? 0)) return;
    let m = this.calls.get(stream);
    if (!m) this.calls.set(stream, (m = new Map()));
    if (m.has(callNo)) return;
    m.set(callNo, data);
    this.heldBytes += data.length;
  }

  private wakeBytes(): void {
    for (const w of this.byteWaiters) w();
  }

  private end(err: Error): void {
    if (this.endedWith) return;
    this.endedWith = err;
    for (const set of this.callWaiters.values()) for (const w of set) w.reject(err);
    this.callWaiters.clear();
    this.wakeBytes();
    this.emit('end', err);
  }

  /**
   * Data of call `callNo` of `stream` once it is stable; a record that left
   * the feed's memory (read before, or never pushed) is fetched from the buffer.
   */
  async read(stream: string, callNo: number, signal?: AbortSignal): Promise<Buffer> {
    const held = this.take(stream, callNo);
    if (held) return held;
    if (this.endedWith) throw this.endedWith;
    const fetched = await this.client.readCalls(stream, callNo, 1);
    if (fetched[0]?.callNo === callNo) {
      this.take(stream, callNo); // the same record may have arrived meanwhile
      this.delivered(stream, callNo);
      return fetched[0].data;
    }
    const arrived = this.take(stream, callNo);
    if (arrived) return arrived;
    return new Promise<Buffer>((resolve, reject) => {
      let set = this.callWaiters.get(stream);
      if (!set) this.callWaiters.set(stream, (set = new Set()));
      if (signal?.aborted) return reject(new FtcpError(ErrorCode.CLOSED, 'read aborted'));
      // The signal outlives this read (a connection's or the agent's), so the
      // listener goes when the waiter does, whichever way it ends.
      const onAbort = (): void => {
        set.delete(w);
        reject(new FtcpError(ErrorCode.CLOSED, 'read aborted'));
      };
      const w: CallWaiter = {
        callNo,
        resolve: (data) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(data);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(w);
    });
  }

  /** Removes and returns a held record, releasing the pull if memory is back under the bound. */
  private take(stream: string, callNo: number): Buffer | null {
    const m = this.calls.get(stream);
    const have = m?.get(callNo);
    if (!have) return null;
    m!.delete(callNo);
    this.heldBytes -= have.length;
    this.delivered(stream, callNo);
    if (this.heldBytes <= this.maxHeldBytes && this.resumePull) {
      const r = this.resumePull;
      this.resumePull = null;
      r();
    }
    return have;
  }

  private delivered(stream: string, callNo: number): void {
    this.readUpTo.set(stream, Math.max(this.readUpTo.get(stream) ?? 0, callNo));
  }

  /** Exactly `length` client bytes of a connection from `offset`, once they are stable. */
  async readInstream(connId: number, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    for (;;) {
      const c = this.conns.get(connId);
      if (c && offset + length <= c.coverage.contiguousEnd) return this.readAhead(c, offset, length);
      if (c && c.finOffset !== null && offset + length > c.finOffset) {
        throw new FtcpError(ErrorCode.NOT_AVAILABLE, `connection ${connId}: [${offset}, ${offset + length}) goes past the client's FIN at ${c.finOffset}`);
      }
      if (this.endedWith) throw this.endedWith;
      if (signal?.aborted) throw new FtcpError(ErrorCode.CLOSED, 'read aborted');
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.byteWaiters.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.byteWaiters.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  /**
   * Stable bytes, from a read-ahead window: a replica reads a connection in
   * the server's own small pieces (a few KiB a call), and one buffer round
   * trip per piece would make a cold roll-forward cost a round trip per call.
   * One request fetches up to {@link READ_AHEAD} stable bytes; the next reads
   * are served from memory.
   */
  private async readAhead(c: ConnState, offset: number, length: number): Promise<Buffer> {
    const w = c.window;
    if (w && offset >= w.offset && offset + length <= w.offset + w.bytes.length) {
      const out = w.bytes.subarray(offset - w.offset, offset - w.offset + length);
      // Consumed from the front: drop the window once it is used up.
      if (offset + length === w.offset + w.bytes.length) c.window = null;
      return out;
    }
    const fetch = Math.max(length, Math.min(READ_AHEAD, c.coverage.contiguousEnd - offset));
    const bytes = await this.client.readInstream(c.rec.connId, offset, fetch);
    this.fetched.instreamBytes += bytes.length;
    c.window = fetch > length ? { offset, bytes } : null;
    return bytes.subarray(0, length);
  }

  /**
   * The same, for the connection whose client is `peer` (as the server's
   * accept saw it): waits for its connection record if it has not arrived.
   * When a client reused its port, the newest open connection is meant.
   */
  async readClientBytes(peer: { address: string; port: number }, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const ip = ipv4ToU32(peer.address);
    for (;;) {
      let found: ConnState | undefined;
      for (const c of this.conns.values()) {
        if (c.rec.clientIp === ip && c.rec.clientPort === peer.port && (!found || !c.closed)) found = c;
      }
      if (found) return this.readInstream(found.rec.connId, offset, length, signal);
      if (this.endedWith) throw this.endedWith;
      if (signal?.aborted) throw new FtcpError(ErrorCode.CLOSED, 'read aborted');
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.off('conn', done);
          this.off('end', done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.on('conn', done);
        this.once('end', done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** The connection record and what is known of it, or undefined. */
  connection(connId: number): Readonly<ConnState> | undefined {
    return this.conns.get(connId);
  }

  /** Every connection the feed has seen. */
  connections(): Readonly<ConnState>[] {
    return [...this.conns.values()];
  }

  /** Unread call records held in memory, in bytes. */
  get held(): number {
    return this.heldBytes;
  }

  /** Stops following; pending reads reject with FTCP_ERR_CLOSED. */
  async close(): Promise<void> {
    this.sub.end();
    this.end(new FtcpError(ErrorCode.CLOSED, 'feed closed'));
    this.resumePull?.();
    await this.running;
  }
}
