/**
 * The stable buffer's store: an append-only log of records in LMDB, with
 * indexes for a connection's instream and a stream's calls, and the in-memory
 * state that answers acknowledgements (FT-TCP 3.10).
 *
 * Databases in one LMDB environment (`<dataDir>/buffer.mdb`):
 * - `log`: LSN -> record bytes ({@link encodeRecord}), in arrival order.
 * - `seg`: [connId, offset] -> [lsn, skip, len]: disjoint pieces of the instream;
 *   piece bytes are `payload[skip, skip+len)` of the segment at `lsn`.
 * - `call`: [stream, callNo] -> lsn of a call record, or [lsn, i] for call i of a batch.
 * - `conn`: connId -> {@link ConnRow}.
 * - `meta`: registered backups and what they consumed, the collection horizon.
 *
 * The epoch lives in its own fsynced file ({@link writeEpoch}).
 *
 * Under `memory` durability a record is stable once it is in this process, so
 * its LMDB writes are not on the acknowledgement's path at all: they wait in
 * memory, in order, and go to LMDB together every few milliseconds. Issuing
 * them per record put LMDB's batch, its write thread and its completion
 * callback into every round trip (about 50 us of a 250 us one on a loaded
 * two-core host). Readers of LMDB flush first, so they see every record.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { ErrorCode, FtcpError } from '../errors.js';
import {
  SegFlag,
  BackupMode,
  decodeRecord,
  encodeRecord,
  type ConnRecord,
  type LogRecord,
  type Message,
  type Positions,
} from '../protocol/messages.js';
import { Coverage } from './coverage.js';
import { lockDataDir } from './dirlock.js';
import { readEpoch, writeEpoch } from './epochfile.js';

/** When a write counts as stable, and so when it is acknowledged. */
export type Durability = 'memory' | 'commit' | 'fsync';

export interface StoreOptions {
  dataDir: string;
  durability: Durability;
  /** Upper bound on retained record bytes; writes beyond it are refused with FTCP_ERR_CAPACITY. */
  maxLogBytes: number;
  /** What {@link Store.collect} may remove; see {@link Retention}. Default `all`. */
  retain?: Retention;
}

/**
 * What the log keeps. A backup replays the server from its start (there are
 * no checkpoints), so a backup that joins at any time, a new one after a
 * takeover among them, needs every call and every connection's bytes:
 * - `all`: keep them; only client-ack records, which a connection's row
 *   supersedes, are collected. The log grows until --max-log-bytes.
 * - `consumed`: once every registered backup consumed them, collect the
 *   records of closed connections and, unless a cold backup is registered,
 *   call records. The log stays small, but from then on no new backup can
 *   join: it would find the server's start gone (FTCP_ERR_LOG_TRUNCATED).
 */
export type Retention = 'all' | 'consumed';

/** Persisted state of one connection. */
interface ConnRow {
  rec: ConnRecord;
  lsn: number;
  closedLsn: number | null;
  /** Offset of the client's FIN, when logged: data ends there. */
  finOffset: number | null;
  ackOffset: number;
  window: number;
  /** Highest TSecr the client echoed (see the client-ack record). */
  tsEcr: number;
}

interface ConnState extends ConnRow {
  coverage: Coverage;
}

/** A backup that subscribed with a name; retention waits for it. */
export interface BackupRow {
  mode: number;
  /** Every record below this LSN has been consumed. */
  consumed: number;
}

/** What appending a record produced. */
export interface AppendResult {
  /** The acknowledgement to send once `stable` settles. */
  ack: Message;
  /** Resolves when the record is stable at the store's durability; null when it already is. */
  stable: Promise<unknown> | null;
  /** LSN of the new record, or null for a duplicate that was not stored again. */
  lsn: number | null;
  /** Encoded record, for live subscribers (null for duplicates). */
  bytes: Buffer | null;
}

const LAST = Number.MAX_SAFE_INTEGER;

/**
 * Under `memory` durability: how long LMDB writes may wait, and how many
 * writes or record bytes make them go at once. The delay spreads LMDB's cost
 * over many records; the bounds cap what waits when records come fast.
 */
const DEFER_MS = 5;
const DEFER_MAX_WRITES = 4096;
const DEFER_MAX_BYTES = 16 * 1024 * 1024;
/** What a deferred write returns in place of its commit promise. */
const ISSUED_LATER: Promise<unknown> = Promise.resolve();

function sameConnection(a: ConnRecord, b: ConnRecord): boolean {
  return (
    a.clientIp === b.clientIp &&
    a.serverIp === b.serverIp &&
    a.clientPort === b.clientPort &&
    a.serverPort === b.serverPort &&
    a.clientIsn === b.clientIsn &&
    a.serverIsn === b.serverIsn
  );
}

export class Store {
  private readonly conns = new Map<number, ConnState>();
  private readonly streams = new Map<string, Coverage>();
  private backups = new Map<string, BackupRow>();
  private nextLsn = 0;
  private collectedBelow = 0;
  /**
   * Per stream, the highest call number collected: its records are gone, but
   * the stream's contiguous end must not fall back to 0 when the buffer
   * restarts, or the writer's next call would look like a gap.
   */
  private collectedCalls = new Map<string, number>();
  private retained = 0;
  private epochValue = 0;
  private ownerValue = '';
  private lastWrite: Promise<unknown> = Promise.resolve();
  /** LMDB writes not issued yet (memory durability), in the order they were made. */
  private deferred: (() => Promise<unknown>)[] = [];
  private deferredBytes = 0;
  private flushTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly env: RootDatabase,
    private readonly log: Database<Buffer, number>,
    private readonly seg: Database<[number, number, number], [number, number]>,
    private readonly call: Database<number | [number, number], [string, number]>,
    private readonly connDb: Database<ConnRow, number>,
    private readonly meta: Database<unknown, string>,
    readonly options: StoreOptions,
    private readonly unlock: () => void,
  ) {}

  /** Opens (or creates) the store in `dataDir` and rebuilds in-memory state from it. */
  static async open(options: StoreOptions): Promise<Store> {
    let env: RootDatabase;
    try {
      mkdirSync(options.dataDir, { recursive: true });
    } catch (err) {
      throw new FtcpError(ErrorCode.STORE, `cannot create data directory ${options.dataDir}: ${(err as Error).message}`, { cause: err });
    }
    const unlock = lockDataDir(options.dataDir);
    try {
      env = open({
        // A file name with an extension inside the directory: lmdb-js would
        // otherwise treat a directory name containing a dot as a file path.
        path: join(options.dataDir, 'buffer.mdb'),
        // `memory` and `commit` need no flush: a committed transaction is in
        // the kernel's page cache and survives this process's crash. Flushing
        // anyway cost ~0.6 ms per commit here. `fsync` waits for `flushed`.
        noSync: options.durability !== 'fsync',
        overlappingSync: options.durability === 'fsync',
        compression: false,
        maxDbs: 8,
      });
    } catch (err) {
      unlock();
      throw new FtcpError(ErrorCode.STORE, `cannot open LMDB store in ${options.dataDir}: ${(err as Error).message}`, { cause: err });
    }
    const store = new Store(
      env,
      env.openDB<Buffer, number>({ name: 'log', encoding: 'binary' }),
      env.openDB<[number, number, number], [number, number]>({ name: 'seg' }),
      env.openDB<number | [number, number], [string, number]>({ name: 'call' }),
      env.openDB<ConnRow, number>({ name: 'conn' }),
      env.openDB<unknown, string>({ name: 'meta' }),
      options,
      unlock,
    );
    try {
      store.recover();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  private recover(): void {
    const ep = readEpoch(this.options.dataDir);
    this.epochValue = ep.epoch;
    this.ownerValue = ep.owner;
    this.collectedBelow = (this.meta.get('collectedBelow') as number | undefined) ?? 0;
    const backups = (this.meta.get('backups') as Record<string, BackupRow> | undefined) ?? {};
    this.backups = new Map(Object.entries(backups));
    for (const { key, value } of this.connDb.getRange()) {
      const coverage = new Coverage();
      for (const { key: k, value: v } of this.seg.getRange({ start: [key, 0], end: [key, LAST] })) {
        coverage.add(k[1], k[1] + v[2]);
      }
      if (value.finOffset !== null) coverage.add(value.finOffset, value.finOffset + 1);
      this.conns.set(key, { ...value, tsEcr: value.tsEcr ?? 0, coverage }); // rows written before tsEcr existed lack it
    }
    const collectedCalls = (this.meta.get('collectedCalls') as Record<string, number> | undefined) ?? {};
    this.collectedCalls = new Map(Object.entries(collectedCalls));
    for (const [stream, callNo] of this.collectedCalls) this.streamCoverage(stream).add(0, callNo);
    for (const key of this.call.getKeys()) {
      const [stream, callNo] = key;
      this.streamCoverage(stream).add(callNo - 1, callNo);
    }
    let last = -1;
    for (const key of this.log.getKeys({ reverse: true, limit: 1 })) last = key;
    this.nextLsn = Math.max(last + 1, this.collectedBelow);
    for (const { value } of this.log.getRange()) this.retained += value.length;
  }

  private streamCoverage(stream: string): Coverage {
    let c = this.streams.get(stream);
    if (!c) {
      c = new Coverage();
      this.streams.set(stream, c);
    }
    return c;
  }

  /** Current epoch (0 before any writer claimed one) and the node that owns it. */
  get epoch(): number {
    return this.epochValue;
  }

  get owner(): string {
    return this.ownerValue;
  }

  /** The next LSN to be assigned. */
  get headLsn(): number {
    return this.nextLsn;
  }

  /** Records below this LSN may have been collected. */
  get firstLsn(): number {
    return this.collectedBelow;
  }

  get retainedBytes(): number {
    return this.retained;
  }

  /** Sets the epoch and its owner, durably whatever the store's durability (invariant 4). */
  async setEpoch(epoch: number, owner: string): Promise<void> {
    assert.ok(epoch >= this.epochValue, 'epochs never go back');
    this.epochValue = epoch;
    this.ownerValue = owner;
    writeEpoch(this.options.dataDir, { epoch, owner });
  }

  private stableAfter(p: Promise<unknown>): Promise<unknown> | null {
    switch (this.options.durability) {
      case 'memory':
        // Already stable; its writes wait in `deferred` and set lastWrite when they go.
        return null;
      case 'commit':
        this.lastWrite = p;
        return p;
      case 'fsync':
        this.lastWrite = p;
        return p.then(() => this.env.flushed);
    }
  }

  /**
   * Every LMDB write of the store goes through here, so writes reach LMDB in
   * the order they were made whether or not they waited. Returns the write's
   * commit promise, or (memory durability) a settled one: nobody waits for it.
   */
  private issue(write: () => Promise<unknown>, bytes = 0): Promise<unknown> {
    if (this.options.durability !== 'memory') return write();
    this.deferred.push(write);
    this.deferredBytes += bytes;
    if (this.deferred.length >= DEFER_MAX_WRITES || this.deferredBytes >= DEFER_MAX_BYTES) this.flush();
    else if (this.flushTimer === null) {
      this.flushTimer = setTimeout(() => this.flush(), DEFER_MS);
      // Pending writes do not keep a process alive: close() flushes them.
      this.flushTimer.unref();
    }
    return ISSUED_LATER;
  }

  /** Hands every waiting write to LMDB now (one transaction). */
  private flush(): void {
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    if (this.deferred.length === 0) return;
    const writes = this.deferred;
    this.deferred = [];
    this.deferredBytes = 0;
    let last = this.lastWrite;
    for (const write of writes) {
      try {
        last = write();
      } catch (err) {
        // Its record was acknowledged already (that is what memory durability
        // means); one bad write must not cost the others, nor crash a timer.
        last = Promise.reject(err);
      }
      // Nothing waits on these: a failed commit shows only through lastWrite.
      last.catch(() => {});
    }
    this.lastWrite = last;
  }

  /** Refuses a record the cap has no room for, before anything is changed. */
  private checkRoom(bytes: Buffer): void {
    if (this.retained + bytes.length > this.options.maxLogBytes) {
      throw new FtcpError(
        ErrorCode.CAPACITY,
        `log would exceed its cap of ${this.options.maxLogBytes} bytes (${this.retained} retained): ` +
          'raise --max-log-bytes or let a backup consume and connections close',
      );
    }
  }

  /** The LMDB write of the record appended last: what a record with no index entry is stable after. */
  private lastLogWrite: Promise<unknown> = ISSUED_LATER;

  private appendLog(bytes: Buffer): number {
    this.checkRoom(bytes);
    const lsn = this.nextLsn++;
    this.retained += bytes.length;
    this.lastLogWrite = this.issue(() => this.log.put(lsn, bytes), bytes.length);
    return lsn;
  }

  private connOrThrow(connId: number): ConnState {
    const c = this.conns.get(connId);
    if (!c) throw new FtcpError(ErrorCode.UNKNOWN_CONNECTION, `no connection record for connection ${connId}`);
    return c;
  }

  private persistConn(c: ConnState): Promise<unknown> {
    // The row is taken now: the connection may change again before a deferred write goes.
    const { coverage: _coverage, ...row } = c;
    return this.issue(() => this.connDb.put(c.rec.connId, row));
  }

  /** Stable offset and the matching client sequence number of a connection. */
  private segmentAck(c: ConnState): Message {
    const stableOffset = c.coverage.contiguousEnd;
    return { kind: 'ack-segment', connId: c.rec.connId, stableOffset, stableSeq: (c.rec.clientIsn + 1 + stableOffset) >>> 0 };
  }

  private dup(ack: Message): AppendResult {
    return { ack, stable: this.stableAfter(this.lastWrite), lsn: null, bytes: null };
  }

  /**
   * Appends one record in arrival order. Duplicates (a resend after a
   * reconnect) are acknowledged and not stored again. Throws FtcpError for a
   * record that contradicts the log or exceeds the cap; nothing is changed then.
   */
  append(rec: LogRecord, encoded?: Buffer): AppendResult {
    const bytesOf = (): Buffer => encoded ?? encodeRecord(rec);
    switch (rec.kind) {
      case 'conn': {
        const old = this.conns.get(rec.connId);
        if (old) {
          if (!sameConnection(old.rec, rec)) {
            throw new FtcpError(ErrorCode.CONFLICT, `connection ${rec.connId} is already recorded with another 4-tuple or ISN`);
          }
          return this.dup({ kind: 'ack-conn', connId: rec.connId });
        }
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        const c: ConnState = { rec, lsn, closedLsn: null, finOffset: null, ackOffset: 0, window: 0, tsEcr: 0, coverage: new Coverage() };
        this.conns.set(rec.connId, c);
        return { ack: { kind: 'ack-conn', connId: rec.connId }, stable: this.stableAfter(this.persistConn(c)), lsn, bytes };
      }
      case 'segment': {
        const c = this.connOrThrow(rec.connId);
        const fin = (rec.flags & SegFlag.FIN) !== 0;
        const rst = (rec.flags & SegFlag.RST) !== 0;
        const dataEnd = rec.offset + rec.payload.length;
        if (fin && c.finOffset !== null && c.finOffset !== dataEnd) {
          throw new FtcpError(ErrorCode.CONFLICT, `connection ${rec.connId}: FIN at ${dataEnd}, already logged at ${c.finOffset}`);
        }
        const fresh = c.coverage.missing(rec.offset, dataEnd + (fin ? 1 : 0));
        if (fresh.length === 0 && !rst) return this.dup(this.segmentAck(c));
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        for (const f of fresh) c.coverage.insert(f);
        // A bare RST adds no index entry: the log write itself is what it waits for.
        let last = this.lastLogWrite;
        for (const f of fresh) {
          const end = Math.min(f.end, dataEnd);
          if (end > f.start) {
            const key: [number, number] = [rec.connId, f.start];
            const value: [number, number, number] = [lsn, f.start - rec.offset, end - f.start];
            last = this.issue(() => this.seg.put(key, value));
          }
        }
        if (fin) {
          c.finOffset = dataEnd;
          last = this.persistConn(c);
        }
        return { ack: this.segmentAck(c), stable: this.stableAfter(last), lsn, bytes };
      }
      case 'call': {
        const cov = this.streamCoverage(rec.stream);
        const fresh = cov.missing(rec.callNo - 1, rec.callNo);
        if (fresh.length === 0) return this.dup({ kind: 'ack-call', stream: rec.stream, contiguous: cov.contiguousEnd });
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        for (const f of fresh) cov.insert(f);
        const p = this.issue(() => this.call.put([rec.stream, rec.callNo], lsn));
        return { ack: { kind: 'ack-call', stream: rec.stream, contiguous: cov.contiguousEnd }, stable: this.stableAfter(p), lsn, bytes };
      }
      case 'call-batch': {
        const cov = this.streamCoverage(rec.stream);
        const first = rec.firstCallNo;
        const fresh = cov.missing(first - 1, first - 1 + rec.datas.length);
        if (fresh.length === 0) return this.dup({ kind: 'ack-call', stream: rec.stream, contiguous: cov.contiguousEnd });
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        let p: Promise<unknown> = Promise.resolve();
        for (const f of fresh) {
          cov.insert(f);
          // Offsets are callNo - 1: the piece [start, end) is calls start+1 .. end.
          for (let callNo = f.start + 1; callNo <= f.end; callNo++) {
            const key: [string, number] = [rec.stream, callNo];
            const value: [number, number] = [lsn, callNo - first];
            p = this.issue(() => this.call.put(key, value));
          }
        }
        return { ack: { kind: 'ack-call', stream: rec.stream, contiguous: cov.contiguousEnd }, stable: this.stableAfter(p), lsn, bytes };
      }
      case 'client-ack': {
        const c = this.connOrThrow(rec.connId);
        if (rec.ackOffset <= c.ackOffset && rec.window === c.window && rec.tsEcr === c.tsEcr) return this.dup({ kind: 'ack-client', connId: rec.connId });
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        c.ackOffset = Math.max(c.ackOffset, rec.ackOffset);
        c.window = rec.window;
        c.tsEcr = rec.tsEcr;
        return { ack: { kind: 'ack-client', connId: rec.connId }, stable: this.stableAfter(this.persistConn(c)), lsn, bytes };
      }
      case 'close': {
        const c = this.connOrThrow(rec.connId);
        if (c.closedLsn !== null) return this.dup({ kind: 'ack-close', connId: rec.connId });
        const bytes = bytesOf();
        const lsn = this.appendLog(bytes);
        c.closedLsn = lsn;
        return { ack: { kind: 'ack-close', connId: rec.connId }, stable: this.stableAfter(this.persistConn(c)), lsn, bytes };
      }
    }
  }

  /** Resolves when every write issued so far is committed (and readable by range reads). */
  async settled(): Promise<void> {
    this.flush();
    await this.lastWrite.catch(() => {});
    await this.log.committed;
  }

  /**
   * Exactly `length` bytes of a connection's instream from `offset`, fused
   * from as many logged segments as needed. Only stable bytes are served.
   */
  async readInstream(connId: number, offset: number, length: number): Promise<Buffer> {
    const c = this.connOrThrow(connId);
    const end = offset + length;
    const dataEnd = Math.min(c.coverage.contiguousEnd, c.finOffset ?? Number.MAX_SAFE_INTEGER);
    if (end > dataEnd) {
      throw new FtcpError(ErrorCode.NOT_AVAILABLE, `connection ${connId}: bytes [${offset}, ${end}) asked, stable data ends at ${dataEnd}`);
    }
    await this.settled();
    const out = Buffer.allocUnsafe(length);
    let at = offset;
    // Pieces are disjoint, so the one starting at or before `offset` holds its first byte.
    let start = offset;
    for (const k of this.seg.getKeys({ start: [connId, offset], end: [connId, -1], reverse: true, limit: 1 })) start = k[1];
    for (const { key, value } of this.seg.getRange({ start: [connId, start], end: [connId, end] })) {
      const [lsn, skip, len] = value;
      const pieceStart = key[1];
      if (pieceStart + len <= at) continue;
      const raw = this.log.get(lsn);
      if (!raw) throw new FtcpError(ErrorCode.STORE, `segment record ${lsn} of connection ${connId} is missing`);
      const rec = decodeRecord(raw);
      assert.ok(rec.kind === 'segment');
      const from = skip + (at - pieceStart);
      const take = Math.min(len - (at - pieceStart), end - at);
      rec.payload.copy(out, at - offset, from, from + take);
      at += take;
      if (at >= end) break;
    }
    if (at < end) throw new FtcpError(ErrorCode.STORE, `connection ${connId}: index has a hole at ${at}`);
    return out;
  }

  /** Up to `max` call records of `stream` from call number `fromCallNo`, in order. */
  async readCalls(stream: string, fromCallNo: number, max: number): Promise<{ callNo: number; data: Buffer }[]> {
    await this.settled();
    const out: { callNo: number; data: Buffer }[] = [];
    for (const { key, value } of this.call.getRange({ start: [stream, fromCallNo], end: [stream, LAST], limit: max })) {
      const [lsn, index] = typeof value === 'number' ? [value, -1] : value;
      const raw = this.log.get(lsn);
      if (!raw) throw new FtcpError(ErrorCode.STORE, `call record ${key[1]} of ${stream} is missing`);
      const rec = decodeRecord(raw);
      const data = rec.kind === 'call' ? rec.data : rec.kind === 'call-batch' ? rec.datas[index] : undefined;
      assert.ok(data !== undefined, `call ${key[1]} of ${stream} points at a ${rec.kind} record`);
      out.push({ callNo: key[1], data });
    }
    return out;
  }

  /** Log records from `fromLsn`, at most `maxEntries` and about `maxBytes`. */
  async readLog(fromLsn: number, maxEntries: number, maxBytes: number): Promise<{ lsn: number; record: Buffer }[]> {
    if (fromLsn < this.collectedBelow) {
      throw new FtcpError(ErrorCode.LOG_TRUNCATED, `records below ${this.collectedBelow} were collected; asked from ${fromLsn}`);
    }
    await this.settled();
    const out: { lsn: number; record: Buffer }[] = [];
    let bytes = 0;
    for (const { key, value } of this.log.getRange({ start: fromLsn, limit: maxEntries })) {
      out.push({ lsn: key, record: Buffer.from(value) });
      bytes += value.length;
      if (bytes >= maxBytes) break;
    }
    return out;
  }

  /** Where every stream and connection stands now. */
  positions(): Positions {
    return {
      headLsn: this.nextLsn,
      streams: [...this.streams].map(([stream, c]) => ({ stream, lastCallNo: c.contiguousEnd })),
      conns: [...this.conns.values()].map((c) => ({ connId: c.rec.connId, stableOffset: c.coverage.contiguousEnd, closed: c.closedLsn !== null })),
    };
  }

  /** Per-connection state for status output. */
  connections(): { connId: number; stableOffset: number; heldBeyond: number; ackOffset: number; closed: boolean }[] {
    return [...this.conns.values()].map((c) => ({
      connId: c.rec.connId,
      stableOffset: c.coverage.contiguousEnd,
      heldBeyond: c.coverage.highEnd - c.coverage.contiguousEnd,
      ackOffset: c.ackOffset,
      closed: c.closedLsn !== null,
    }));
  }

  /** Registers (or updates) a named backup; retention then waits for what it consumes. */
  registerBackup(node: string, mode: number, fromLsn: number): void {
    const old = this.backups.get(node);
    // A resubscription does not consume anything by itself: what it skips may
    // still sit unprocessed in the backup's queue, so only CONSUMED advances.
    this.backups.set(node, { mode, consumed: old ? old.consumed : Math.min(fromLsn, this.nextLsn) });
    this.persistBackups();
  }

  /**
   * Forgets a registered backup: one that was promoted writes the log now,
   * and its frozen position must hold back neither retention nor the lag
   * that status reports.
   */
  unregisterBackup(node: string): void {
    if (this.backups.delete(node)) this.persistBackups();
  }

  /** Records that `node` consumed every record below `lsn`. */
  consumed(node: string, lsn: number): void {
    const b = this.backups.get(node);
    if (!b || lsn <= b.consumed) return;
    b.consumed = Math.min(lsn, this.nextLsn);
    this.persistBackups();
  }

  private persistBackups(): void {
    const row = Object.fromEntries([...this.backups].map(([node, b]) => [node, { ...b }]));
    void this.issue(() => this.meta.put('backups', row));
  }

  get registeredBackups(): ReadonlyMap<string, BackupRow> {
    return this.backups;
  }

  /**
   * Collects what no one needs any more: when no registered backup is cold
   * (a cold one replays from the server's start), the consumed records of
   * connections that closed and consumed call records; and consumed client
   * acknowledgements, which the connection's row supersedes. With no registered backup nothing is collected. Returns the
   * number of records removed.
   */
  async collect(maxRecords = 10_000): Promise<number> {
    if (this.backups.size === 0) return 0;
    let horizon = this.nextLsn;
    let anyCold = false;
    for (const b of this.backups.values()) {
      horizon = Math.min(horizon, b.consumed);
      if (b.mode === BackupMode.COLD) anyCold = true;
    }
    const keepAll = (this.options.retain ?? 'all') === 'all';
    let removed = 0;
    let callsCollected = false;
    let contiguous = true;
    let newFirst = this.collectedBelow;
    await this.settled();
    for (const { key: lsn, value } of this.log.getRange({ start: this.collectedBelow, end: horizon, limit: maxRecords })) {
      const rec = decodeRecord(value);
      let drop = false;
      if (rec.kind === 'call' || rec.kind === 'call-batch') {
        drop = !keepAll && !anyCold;
        if (drop) {
          const first = rec.kind === 'call' ? rec.callNo : rec.firstCallNo;
          const count = rec.kind === 'call' ? 1 : rec.datas.length;
          for (let i = 0; i < count; i++) void this.issue(() => this.call.remove([rec.stream, first + i]));
          if (first + count - 1 > (this.collectedCalls.get(rec.stream) ?? 0)) {
            this.collectedCalls.set(rec.stream, first + count - 1);
            callsCollected = true;
          }
        }
      } else if (rec.kind === 'client-ack') {
        drop = true;
      } else {
        // A cold backup replays the server from its start: the instream of a
        // connection that closed long ago is still read by that replay.
        const c = this.conns.get(rec.connId);
        drop = !keepAll && !anyCold && (c === undefined || (c.closedLsn !== null && c.closedLsn < horizon));
        if (drop && c && rec.kind === 'close') {
          for (const k of this.seg.getKeys({ start: [c.rec.connId, 0], end: [c.rec.connId, LAST] })) void this.issue(() => this.seg.remove(k));
          const connId = c.rec.connId;
          void this.issue(() => this.connDb.remove(connId));
          this.conns.delete(c.rec.connId);
        }
      }
      if (drop) {
        void this.issue(() => this.log.remove(lsn));
        this.retained -= value.length;
        removed++;
        if (contiguous) newFirst = lsn + 1;
      } else {
        contiguous = false;
      }
    }
    if (newFirst !== this.collectedBelow) {
      this.collectedBelow = newFirst;
      void this.issue(() => this.meta.put('collectedBelow', newFirst));
    }
    if (callsCollected) {
      const row = Object.fromEntries(this.collectedCalls);
      void this.issue(() => this.meta.put('collectedCalls', row));
    }
    // What was collected goes now, not a few ms later: the caller may read next.
    this.flush();
    await this.log.committed;
    return removed;
  }

  /** Flushes and closes the environment. */
  async close(): Promise<void> {
    await this.settled();
    await this.env.flushed;
    await this.env.close();
    this.unlock();
  }
}
