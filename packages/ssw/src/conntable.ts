/**
 * Per-connection state of the south-side wrap and the table that holds it
 * (FT-TCP 3.3, 3.6). Pure: time comes from an injectable clock.
 *
 * Sequence numbers kept here are in the CLIENT's view (what is on the wire
 * between the wrap and the client) unless a name says `kernel`. The deltas
 * turn the local kernel's view into the client's: client = kernel + delta.
 */
import { FtcpError } from '@ftcp/stable-buffer';
import type { ConnRecord } from '@ftcp/stable-buffer';
import { SswErrorCode } from './errors.js';
import { offsetToSeq, seq, seqAdd, seqDelta, seqMax } from './wire/seq.js';
import type { SeqDelta, SeqNum } from './wire/seq.js';
import { MAX_WINDOW_SCALE } from './wire/tcp.js';

/** The four-tuple of a connection, addresses as unsigned 32-bit integers. */
export interface ConnKey {
  readonly clientAddr: number;
  readonly clientPort: number;
  readonly serverAddr: number;
  readonly serverPort: number;
}

/**
 * What the wrap does with a connection's segments.
 * `record`: the primary (FT-TCP 3.3): rewrite and send.
 * `silent`: a backup before promotion (FT-TCP 3.6): drop every outgoing one.
 * `pending`: adopted by a promoted backup from the dead primary, its kernel
 * socket not rebuilt yet: every incoming segment is dropped (the kernel would
 * answer it with a RST) and the client is kept waiting with zero-window ACKs
 * (FT-TCP 2.3.1); the first outgoing segment, sent by the rebuilt socket,
 * makes it `record`.
 */
export type ConnMode = 'silent' | 'record' | 'pending';

/**
 * Offsets from the local kernel's view of a connection to the client's.
 * All zero on an ordinary primary; non-zero for a connection a backup
 * rebuilt with its own handshake (FT-TCP 3.8: `odelta-seq`, `idelta-seq`).
 */
export interface ConnDeltas {
  /** Server sequence space: client-view seq = kernel seq + seqDelta. */
  readonly seqDelta: SeqDelta;
  /** Client sequence space: client-view ack = kernel ack + ackDelta. */
  readonly ackDelta: SeqDelta;
  /** Timestamps (RFC 7323): client-view TSval = kernel TSval + tsOffset, modulo 2^32. */
  readonly tsOffset: number;
}

/** Deltas of an ordinary connection: the identity mapping. */
export const ZERO_DELTAS: ConnDeltas = Object.freeze({ seqDelta: seqDelta(0), ackDelta: seqDelta(0), tsOffset: 0 });

/** What each side offered in its SYN (RFC 9293 3.7.1, RFC 7323, RFC 2018). */
export interface SynOptions {
  mss: number | undefined;
  windowScale: number | undefined;
  sackPermitted: boolean;
  timestamps: boolean;
}

/** The state of one connection. Mutated by the rewriter and the table only. */
export interface Connection {
  readonly key: ConnKey;
  /** {@link connId} of the key; the table's index. */
  readonly id: string;
  mode: ConnMode;
  deltas: ConnDeltas;
  /** The client's ISN (its SYN's seq). */
  clientIsn: SeqNum | undefined;
  /** The server's ISN as the client sees it. */
  serverIsn: SeqNum | undefined;
  /** What the client's SYN offered; undefined until seen. */
  clientSyn: SynOptions | undefined;
  /** What the server's SYN-ACK offered; undefined until seen. */
  serverSyn: SynOptions | undefined;
  /**
   * The connection record (ISNs, options) is stable in the buffer, so the
   * SYN-ACK may leave (DESIGN invariant 3).
   */
  handshakeStable: boolean;
  /**
   * First client byte not yet stable in the buffer (FT-TCP 3.3 stable-seq):
   * no outgoing ack may exceed it (DESIGN invariant 1).
   */
  stableSeq: SeqNum;
  /**
   * Highest ack the local kernel has generated (client view): the kernel
   * holds every client byte before it. Crafted ACKs never pass it.
   */
  kernelAckHigh: SeqNum | undefined;
  /** Highest ack sent to the client; undefined before the first. */
  lastAckSent: SeqNum | undefined;
  /** Highest right edge (ack + scaled window) advertised to the client. */
  lastRightEdge: SeqNum | undefined;
  /**
   * Highest right edge the local kernel advertised (its ack plus its scaled
   * window, client view): where its receive window ends. Linux drops a
   * client segment that starts past it whole, ack included (`tcp_sequence`),
   * so no window we advertise may reach past it.
   */
  kernelRightHigh: SeqNum | undefined;
  /** Next server sequence number after everything sent so far. */
  sndNxt: SeqNum | undefined;
  /** Highest ack the client has sent (server space, client view). */
  clientAckHigh: SeqNum | undefined;
  /** Highest right edge the client has advertised (server space). */
  clientRightEdgeHigh: SeqNum | undefined;
  /** Last TSval sent to the client (client view), for crafted segments. */
  lastTsValSent: number | undefined;
  /** Last TSval received from the client, echoed by crafted segments. */
  lastClientTsVal: number | undefined;
  /**
   * Highest TSecr the client echoed (client view, RFC 7323 5.2 order): the
   * newest of our TSvals it had seen, so the floor for every TSval sent to it
   * (its PAWS check drops older ones). Undefined before the first.
   */
  clientTsEcrHigh: number | undefined;
  /**
   * Adopted from a dead primary's record by a promoted backup (see
   * {@link AdoptedConnection}): the rebuilt kernel socket may not yet have
   * re-sent what the old primary sent, so the client may ack beyond it.
   */
  adopted: boolean;
  /**
   * A pending adopted connection being rebuilt by a spoofed handshake
   * (handshake-rebuild.ts): the kernel's segments are the wrap's to take,
   * not the client's to see, and do not make the connection live.
   */
  handshakeRebuild: boolean;
  finFromClient: boolean;
  finFromServer: boolean;
  reset: boolean;
  /** Clock time when both FINs had been seen, or undefined. */
  closedAt: number | undefined;
  /** Clock time of the last segment either way. */
  lastActivity: number;
}

/** The table key of a four-tuple. */
export function connId(k: ConnKey): string {
  return `${k.clientAddr}:${k.clientPort}>${k.serverAddr}:${k.serverPort}`;
}

/**
 * The window shift of segments from server to client: the server's offer
 * when both sides offered one (RFC 7323 2.2), at most 14 (RFC 7323 2.3);
 * otherwise 0. SYN segments are never scaled; callers handle that.
 */
export function outgoingWindowShift(c: Connection): number {
  const s = c.serverSyn?.windowScale;
  if (s === undefined || c.clientSyn?.windowScale === undefined) return 0;
  return Math.min(s, MAX_WINDOW_SCALE);
}

/** The window shift of segments from client to server (see {@link outgoingWindowShift}). */
export function incomingWindowShift(c: Connection): number {
  const s = c.clientSyn?.windowScale;
  if (s === undefined || c.serverSyn?.windowScale === undefined) return 0;
  return Math.min(s, MAX_WINDOW_SCALE);
}

/** True when both SYNs offered timestamps (RFC 7323 3.2). */
export function timestampsNegotiated(c: Connection): boolean {
  return (c.clientSyn?.timestamps ?? false) && (c.serverSyn?.timestamps ?? false);
}

/** True when both SYNs offered SACK (RFC 2018 2). */
export function sackNegotiated(c: Connection): boolean {
  return (c.clientSyn?.sackPermitted ?? false) && (c.serverSyn?.sackPermitted ?? false);
}

/**
 * Record that the buffer holds every client byte before `s` (client view).
 * stable-seq only moves forward (FT-TCP 3.3: "the larger of the current
 * value of stable-seq and sn + l + 1").
 */
export function advanceStable(c: Connection, s: SeqNum): void {
  c.stableSeq = seqMax(c.stableSeq, s);
}

/**
 * Mark the connection record stable: the SYN-ACK may leave, and the client's
 * SYN counts as stable, so an ack of ISN + 1 may go out (DESIGN invariant 3).
 */
export function markHandshakeStable(c: Connection): void {
  c.handshakeStable = true;
  if (c.clientIsn !== undefined) advanceStable(c, seqAdd(c.clientIsn, 1));
}

/**
 * Promote a backup's connection: switch it from silent to record mode with
 * the deltas between the rebuilt kernel socket and the client's view
 * (FT-TCP 3.8). Its handshake is stable by definition: it came from the buffer.
 */
export function promote(c: Connection, deltas: ConnDeltas): void {
  c.mode = 'record';
  c.deltas = deltas;
  c.handshakeStable = true;
}

/** The fields of a connection record an adoption needs (a full `ConnRecord` will do). */
export type AdoptedConnRecord = Omit<ConnRecord, 'kind' | 'epoch'>;

/**
 * A connection of a dead primary that a promoted backup takes over: what the
 * stable buffer holds about it. The new primary keeps logging to the same
 * buffer connection (`rec.connId`) at the same instream offsets, so a later
 * backup replays one history.
 */
export interface AdoptedConnection {
  /** The connection record: 4-tuple, ISNs, MSS, both window scales, SACK, timestamps. */
  rec: AdoptedConnRecord;
  /** Client bytes logged, contiguous from offset 0 (a FIN counts one): stable-seq starts here. */
  stableOffset: number;
  /** Offset of the outstream the client acknowledged up to (exclusive), as logged. */
  clientAckOffset: number;
  /** The client's last logged window in bytes (already scaled). */
  clientWindow: number;
  /** Highest TSecr the client echoed, as logged (0 without timestamps). */
  clientTsEcr: number;
}

/**
 * Check an {@link AdoptedConnection} before it changes any state.
 * @throws FtcpError `FTCP_ERR_BAD_CONFIG` naming the first bad field.
 */
export function checkAdoptedConnection(a: AdoptedConnection): void {
  const r = a.rec;
  const u32 = 0xffffffff;
  const fields: [string, number, number, number][] = [
    ['rec.connId', r.connId, 0, Number.MAX_SAFE_INTEGER],
    ['rec.clientIp', r.clientIp, 0, u32],
    ['rec.serverIp', r.serverIp, 0, u32],
    ['rec.clientPort', r.clientPort, 0, 0xffff],
    ['rec.serverPort', r.serverPort, 0, 0xffff],
    ['rec.clientIsn', r.clientIsn, 0, u32],
    ['rec.serverIsn', r.serverIsn, 0, u32],
    ['rec.mss', r.mss, 0, 0xffff],
    ['rec.clientWscale', r.clientWscale, 0, MAX_WINDOW_SCALE],
    ['rec.serverWscale', r.serverWscale, 0, MAX_WINDOW_SCALE],
    ['stableOffset', a.stableOffset, 0, Number.MAX_SAFE_INTEGER],
    ['clientAckOffset', a.clientAckOffset, 0, Number.MAX_SAFE_INTEGER],
    ['clientWindow', a.clientWindow, 0, 0xffff * 2 ** MAX_WINDOW_SCALE],
    ['clientTsEcr', a.clientTsEcr, 0, u32],
  ];
  for (const [name, v, lo, hi] of fields) {
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new FtcpError(SswErrorCode.BAD_CONFIG, `adopted connection ${r.connId}: ${name} must be an integer in [${lo}, ${hi}], got ${v}`);
    }
  }
}

/** The four-tuple of an adopted connection's record. */
export function adoptedKey(a: AdoptedConnection): ConnKey {
  const r = a.rec;
  return { clientAddr: r.clientIp, clientPort: r.clientPort, serverAddr: r.serverIp, serverPort: r.serverPort };
}

/**
 * A `pending` connection's rebuilt kernel socket has sent its first segment
 * (leaving TCP_REPAIR sends a window probe; nothing else sends on that
 * four-tuple, as every incoming segment was dropped): from now on it is an
 * ordinary `record` connection. Returns true when it was pending.
 */
export function goLive(c: Connection): boolean {
  if (c.mode !== 'pending') return false;
  c.mode = 'record';
  return true;
}

/** Limits and clock of a {@link ConnTable}. */
export interface ConnTableOptions {
  /** Most connections held at once; new ones are refused beyond it. Default 65536. */
  maxEntries?: number;
  /**
   * A connection with no segment either way for this long, in ms, may be
   * collected when the table needs its room. Default 2 hours.
   */
  idleTimeoutMs?: number;
  /**
   * Keep a connection this long (ms) after both FINs, so the last ACK and any
   * retransmitted FIN are still rewritten. Default 2000.
   */
  closeLingerMs?: number;
  /** Clock in ms; default `Date.now`. */
  now?: () => number;
}

/** Initial fields of a connection opened with {@link ConnTable.open}. */
export interface OpenConnection {
  mode: ConnMode;
  /** Client ISN if known (from its SYN); stable-seq starts at it. */
  clientIsn?: SeqNum;
  /** Initial stable-seq when there is no client SYN (a promoted connection). */
  stableSeq?: SeqNum;
  deltas?: ConnDeltas;
}

/**
 * The connection table: bounded, collected on close (FIN both ways plus a
 * linger), on reset, and on idle timeout when a new connection needs the
 * room. An idle connection is not collected just for being idle: Linux keeps
 * one forever, and once collected its next segment would reach the server
 * unlogged and the kernel's answer be dropped, which breaks the connection
 * (a Redis client quiet for a few hours). It never evicts a connection
 * active within the idle timeout to make room.
 */
export class ConnTable {
  readonly maxEntries: number;
  readonly idleTimeoutMs: number;
  readonly closeLingerMs: number;
  readonly now: () => number;
  private readonly conns = new Map<string, Connection>();

  /** @throws FtcpError `FTCP_ERR_BAD_CONFIG` for a non-positive limit. */
  constructor(opts: ConnTableOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 65536;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 2 * 60 * 60 * 1000;
    this.closeLingerMs = opts.closeLingerMs ?? 2000;
    this.now = opts.now ?? Date.now;
    for (const [name, v] of [
      ['maxEntries', this.maxEntries],
      ['idleTimeoutMs', this.idleTimeoutMs],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new FtcpError(SswErrorCode.BAD_CONFIG, `${name} must be a positive integer, got ${v}`);
    }
    if (!Number.isInteger(this.closeLingerMs) || this.closeLingerMs < 0) {
      throw new FtcpError(SswErrorCode.BAD_CONFIG, `closeLingerMs must be a non-negative integer, got ${this.closeLingerMs}`);
    }
  }

  /** Number of connections held. */
  get size(): number {
    return this.conns.size;
  }

  /** The connection of `key`, or undefined. */
  get(key: ConnKey): Connection | undefined {
    return this.conns.get(connId(key));
  }

  /** Every connection held, in insertion order. */
  values(): IterableIterator<Connection> {
    return this.conns.values();
  }

  /**
   * Add a connection (replacing any with the same key). When the table is
   * full it first collects what it may; if still full it returns undefined
   * and the caller drops the SYN, so the client retries later.
   */
  open(key: ConnKey, init: OpenConnection): Connection | undefined {
    const id = connId(key);
    if (!this.conns.has(id) && this.conns.size >= this.maxEntries) {
      this.sweep(true);
      if (this.conns.size >= this.maxEntries) return undefined;
    }
    const stableSeq = init.stableSeq ?? init.clientIsn;
    const c: Connection = {
      key: { ...key },
      id,
      mode: init.mode,
      deltas: init.deltas ?? ZERO_DELTAS,
      clientIsn: init.clientIsn,
      serverIsn: undefined,
      clientSyn: undefined,
      serverSyn: undefined,
      handshakeStable: false,
      // Nothing is stable yet: not even the SYN (invariant 3 holds the SYN-ACK).
      stableSeq: stableSeq ?? seq(0),
      kernelAckHigh: undefined,
      lastAckSent: undefined,
      lastRightEdge: undefined,
      kernelRightHigh: undefined,
      sndNxt: undefined,
      clientAckHigh: undefined,
      clientRightEdgeHigh: undefined,
      lastTsValSent: undefined,
      lastClientTsVal: undefined,
      clientTsEcrHigh: undefined,
      adopted: false,
      handshakeRebuild: false,
      finFromClient: false,
      finFromServer: false,
      reset: false,
      closedAt: undefined,
      lastActivity: this.now(),
    };
    this.conns.set(id, c);
    return c;
  }

  /**
   * Add a connection adopted from a dead primary (see {@link AdoptedConnection}),
   * in mode `pending`, replacing any with the same four-tuple. Its view is
   * rebuilt from the record: ISNs, both sides' options, stable-seq at
   * `stableOffset`, the client's ack, right edge and TSecr as logged, and the
   * send edge at the client's ack (the rebuilt socket's send queue starts
   * there; outgoing segments move it on). Its handshake is stable: the record
   * came from the buffer. Returns undefined when the table is full.
   * Check the input with {@link checkAdoptedConnection} first.
   */
  adopt(a: AdoptedConnection): Connection | undefined {
    const r = a.rec;
    const clientIsn = seq(r.clientIsn);
    const c = this.open(adoptedKey(a), { mode: 'pending', clientIsn, stableSeq: offsetToSeq(a.stableOffset, clientIsn) });
    if (c === undefined) return undefined;
    // The record keeps the negotiated shifts only (0 when not negotiated),
    // which give the same shifts when set on both sides.
    const syn = (windowScale: number): SynOptions => ({ mss: r.mss, windowScale, sackPermitted: r.sackOk, timestamps: r.timestamps });
    c.clientSyn = syn(r.clientWscale);
    c.serverSyn = syn(r.serverWscale);
    c.serverIsn = seq(r.serverIsn);
    c.handshakeStable = true;
    c.adopted = true;
    const clientAck = offsetToSeq(a.clientAckOffset, c.serverIsn);
    c.sndNxt = clientAck;
    c.clientAckHigh = clientAck;
    c.clientRightEdgeHigh = seqAdd(clientAck, a.clientWindow);
    c.clientTsEcrHigh = r.timestamps ? a.clientTsEcr : undefined;
    return c;
  }

  /** Remove the connection of `key`; true when there was one. */
  delete(key: ConnKey): boolean {
    return this.conns.delete(connId(key));
  }

  /** Note a segment on `c` now, for the idle timeout. */
  touch(c: Connection): void {
    c.lastActivity = this.now();
  }

  /** Note a FIN from one side; when both sides have sent one, start the linger. */
  noteFin(c: Connection, fromClient: boolean): void {
    if (fromClient) c.finFromClient = true;
    else c.finFromServer = true;
    if (c.finFromClient && c.finFromServer && c.closedAt === undefined) c.closedAt = this.now();
  }

  /** Note a RST: the connection is over at once (RFC 9293 3.10.7.4) and is removed. */
  noteReset(c: Connection): void {
    c.reset = true;
    this.conns.delete(c.id);
  }

  /**
   * Remove connections closed longer than the linger, and with `forRoom`
   * (the table is full) those idle longer than the idle timeout too.
   * Returns how many were removed.
   */
  sweep(forRoom = false): number {
    const now = this.now();
    let removed = 0;
    for (const [id, c] of this.conns) {
      const closed = c.closedAt !== undefined && now - c.closedAt >= this.closeLingerMs;
      const idle = forRoom && now - c.lastActivity >= this.idleTimeoutMs;
      if (closed || idle) {
        this.conns.delete(id);
        removed++;
      }
    }
    return removed;
  }
}
