/**
 * The south-side wrap in record mode, end to end (FT-TCP 3.3, 3.11): packets
 * from the queue go through the decision core ({@link SouthSideWrap}); every
 * client segment that carries data, FIN or RST is sent to the stable buffer
 * before its verdict, on the primary's one ordered channel; the buffer's
 * acknowledgements move stable-seq, which caps every ack the client sees
 * (DESIGN invariant 1); the SYN-ACK is held until the connection record is
 * stable (invariant 3); the client's ack and window high-water marks are
 * logged, coalesced, for a backup's send buffers.
 *
 * Ack strategies, FT-TCP 3.11, for when the buffer acknowledges new bytes:
 * - `eager`: craft and inject a fresh ACK at once;
 * - `delayed`: inject one if no outgoing segment carried the news within
 *   `delayedAckMs` (like a receiver's delayed ACK);
 * - `lazy`: never inject; the next segment the server sends carries it;
 * - `hold`: a client segment reaches the server's kernel only once the
 *   buffer has acknowledged it, so the kernel never holds, and never
 *   acknowledges, a byte that is not stable, and its own ACKs need no clamp
 *   (a clamp stays in force for whatever is queued). That lets the rules
 *   pass outgoing segments without the queue (see `ServiceRules`,
 *   `control`), where a verdict in user space for each of them costs half
 *   the throughput of an outgoing bulk transfer; a request reaches the
 *   server one buffer round trip later.
 *
 * A promoted backup hands the recorder the dead primary's connections
 * ({@link Recorder.adopt}): they log to the same buffer connections at the
 * same offsets; while `pending` (no rebuilt socket yet) their clients get
 * zero-window ACKs instead of the kernel's RSTs; when the rebuilt socket
 * speaks, the client gets a window update and duplicate ACKs.
 */
import type { StableBufferClient } from '@ftcp/stable-buffer';
import { CloseReason, ErrorCode, FtcpError, SegFlag } from '@ftcp/stable-buffer';
import type { AdoptedConnection, Connection } from './conntable.js';
import {
  adoptedKey,
  advanceStable,
  checkAdoptedConnection,
  connId,
  incomingWindowShift,
  markHandshakeStable,
  outgoingWindowShift,
  sackNegotiated,
  timestampsNegotiated,
} from './conntable.js';
import { ackIsDue, craftAck } from './craft.js';
import { HandshakeRebuild, type HandshakeRebuildInput } from './handshake-rebuild.js';
import { SswErrorCode } from './errors.js';
import type { SouthSideWrap, Verdict } from './wrap.js';
import { seq, seqAdd, seqForward, seqGt, seqLt, seqToOffset, u32Diff } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import { formatIpv4Address } from './wire/ipv4.js';
import { TcpFlag } from './wire/tcp.js';
import type { TcpPacket } from './wire/tcp.js';

/** When the client hears that the buffer logged its bytes (see the header). */
export const ACK_STRATEGIES = ['eager', 'delayed', 'lazy', 'hold'] as const;
export type AckStrategy = (typeof ACK_STRATEGIES)[number];

/** Gives queued packets their verdicts; an {@link NfQueue} is one. */
export interface PacketVerdicts {
  accept(id: number, opts?: { payload?: Uint8Array; mark?: number }): void;
  drop(id: number): void;
  /**
   * Optional: accept, unchanged, every packet still waiting with an id up to
   * `id`, in one message (see `NfQueue.acceptThrough`). Given, the recorder
   * accepts a run of packets that need no new bytes with one call instead
   * of one each, whenever no packet is held in the queue.
   */
  acceptThrough?(id: number): void;
}

/** Sends a crafted IPv4 packet past the wrap's own rules (raw socket with the skip mark). */
export interface PacketInjector {
  send(packet: Uint8Array): void;
}

/** A packet from the queue, as the recorder needs it (a `QueuedPacket` is one). */
export interface RecordedPacket {
  readonly id: number;
  /** Netfilter hook: PRE_ROUTING (0) or LOCAL_IN (1) is incoming, LOCAL_OUT (3) outgoing. */
  readonly hook: number;
  readonly payload: Buffer;
  readonly checksumPartial: boolean;
  readonly truncatedOk?: boolean;
}

export interface RecorderOptions {
  wrap: SouthSideWrap;
  /** The writer of the current epoch; a backup may start its wrap first and attach (promote) before the first packet. */
  buffer: StableBufferClient;
  verdicts: PacketVerdicts;
  /** Needed for `eager` and `delayed`. */
  injector?: PacketInjector;
  ack?: AckStrategy;
  /** For `delayed`: how long an outgoing segment may take to carry the news. Default 40 ms. */
  delayedAckMs?: number;
  /** Client ack high-water marks are logged at most this often per connection. Default 10 ms. */
  clientAckEveryMs?: number;
  /** First buffer connection id; ids must not repeat within a buffer. Default epoch * 2^32 + 1. */
  firstConnId?: number;
  /**
   * Pending connections: the least time between two zero-window ACKs to one
   * client, in ms, however many of its segments arrive. Default 100.
   */
  zeroWindowAckGapMs?: number;
  /** Pending connections: a zero-window keep-alive this often, in ms, even to a silent client. Default 1000. */
  pendingKeepaliveMs?: number;
}

/** Counters an operator reads during an incident. */
export interface RecorderCounters {
  segmentsLogged: number;
  bytesLogged: number;
  connectionsLogged: number;
  synAcksHeld: number;
  acksInjected: number;
  logFailures: number;
  truncatedDropped: number;
  closesLogged: number;
  /** Client ack, window and TSecr high-water records written. */
  clientAcksLogged: number;
  /** Connections adopted from a dead primary. */
  adopted: number;
  /** Zero-window ACKs sent to clients of pending connections (answers and keep-alives). */
  zeroWindowAcks: number;
  /** ACKs sent when a pending connection went live (a window update, then duplicates). */
  goLiveAcks: number;
  /** Pending connections given up with {@link Recorder.releasePending}. */
  pendingReleased: number;
  /** Client segments at stable-seq held while pending and delivered when the rebuilt socket went live. */
  headsDelivered: number;
  /** Crafted packets the raw socket refused (each is lost; the client or a timer recovers). */
  injectFailures: number;
  /** Outgoing packets dropped while muted (see {@link Recorder.mute}). */
  mutedDrops: number;
  /** Connections rebuilt by a spoofed handshake, and ones that could not be. */
  handshakesRebuilt: number;
  handshakesFailed: number;
}

/**
 * Duplicate ACKs sent after the window update when a pending connection goes
 * live. Measured on Linux 6.18 (two namespaces, client segments dropped,
 * ACKs crafted from the server's side): a client without SACK that has not
 * yet had a retransmission timeout fast-retransmits at once on the third
 * duplicate (`tcp_newreno_mark_lost`: three reno "SACKs" reach the
 * reordering threshold). A client with SACK ignores plain duplicates (RACK,
 * like RFC 6675, needs SACKed data), and a client already in loss recovery
 * after a timeout (any outage longer than its RTO) ignores both: only an ACK
 * of new data frees its congestion window, so it resends at its next,
 * backed-off, RTO. Three small packets are cheap for the case they help.
 */
export const GO_LIVE_DUPLICATE_ACKS = 3;

const HOOK_LOCAL_OUT = 3;

/** Connections {@link Recorder.stableLag} lists by default: enough to spot the worst, small enough for a status report. */
export const STABLE_LAG_LISTED = 16;

/** One connection's stable-seq lag (see {@link Recorder.stableLag}). */
export interface ConnectionLag {
  /** The buffer's connection id, as `ftcp status` lists the buffer's connections. */
  connId: number;
  /** The client's address and port. */
  client: string;
  /** Client bytes logged beyond the stable offset. */
  lagBytes: number;
  /** Server bytes the client has acknowledged (an offset from the server's first byte). */
  clientAcked: number;
}

/** Stable-seq lag of a recorder's connections: the total, and the connections that lag most. */
export interface StableLag {
  totalBytes: number;
  connections: ConnectionLag[];
}

interface Tracked {
  bufferId: number;
  /** The connection record is on its way; the held SYN-ACKs wait for it. */
  held: { id: number; payload: Buffer; checksumPartial: boolean }[];
  conn: Connection;
  recordWritten: boolean;
  /** Offset of stable-seq, to unwrap sequence numbers near it. */
  stableOffset: number;
  /**
   * End offset of the furthest client segment sent to the buffer (a FIN
   * counted): what passes `stableOffset` is received and not yet stable.
   */
  loggedEnd: number;
  clientAckLogged: number;
  /** The TSecr and window of the last client-ack record (undefined before one). */
  tsEcrLogged: number | undefined;
  windowLogged: number | undefined;
  /** Clock time of the last zero-window ACK sent to this client. */
  lastZeroWindowAckAt: number;
  clientAckTimer: NodeJS.Timeout | null;
  delayedTimer: NodeJS.Timeout | null;
  closeLogged: boolean;
  /**
   * Pending only: the client's latest segment that starts at stable-seq (its
   * retransmission of the first byte nobody logged), held in the queue
   * until the rebuilt socket is live. See {@link Recorder.holdHead}.
   */
  heldHead: RecordedPacket | null;
  /** A spoofed handshake under way (see {@link Recorder.rebuildByHandshake}). */
  handshake: HandshakeInFlight | null;
}

/** A followed connection's state: what was logged of it (a new one: nothing; an adopted one: the old primary's), and nothing in flight. */
function newTracked(
  bufferId: number,
  conn: Connection,
  logged: Pick<Tracked, 'recordWritten' | 'stableOffset' | 'clientAckLogged' | 'tsEcrLogged' | 'windowLogged'>,
): Tracked {
  return { bufferId, conn, held: [], ...logged, loggedEnd: logged.stableOffset, lastZeroWindowAckAt: -Infinity, clientAckTimer: null, delayedTimer: null, closeLogged: false, heldHead: null, handshake: null };
}

interface HandshakeInFlight {
  readonly rebuild: HandshakeRebuild;
  synsSent: number;
  timer: NodeJS.Timeout | null;
  /** Resolves the caller's promise, once: at the SYN-ACK or at the first failure. */
  readonly settle: (r: HandshakeRebuildResult) => void;
}

/** What {@link Recorder.rebuildByHandshake} needs: the stable instream and the client's TCP facts. */
export interface HandshakeRebuildRequest extends HandshakeRebuildInput {
  /** The TSval of the client's SYN, from the connection record (used when no later one was seen). */
  readonly clientSynTsVal: number;
}

/** How a handshake rebuild ended. */
export type HandshakeRebuildResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Spoofed SYNs sent before a handshake rebuild gives up (a full accept queue drops them), one per {@link HANDSHAKE_SYN_GAP_MS}. */
export const HANDSHAKE_SYN_TRIES = 10;
export const HANDSHAKE_SYN_GAP_MS = 100;

export class Recorder {
  readonly counters: RecorderCounters = {
    segmentsLogged: 0,
    bytesLogged: 0,
    connectionsLogged: 0,
    synAcksHeld: 0,
    acksInjected: 0,
    mutedDrops: 0,
    handshakesRebuilt: 0,
    handshakesFailed: 0,
    headsDelivered: 0,
    logFailures: 0,
    truncatedDropped: 0,
    closesLogged: 0,
    clientAcksLogged: 0,
    adopted: 0,
    zeroWindowAcks: 0,
    goLiveAcks: 0,
    pendingReleased: 0,
    injectFailures: 0,
  };
  private readonly tracked = new Map<string, Tracked>();
  /** Set at the first new connection: a backup starts its wrap before it is promoted, when its epoch is not known yet. */
  private nextConnId: number | null;
  private readonly ack: AckStrategy;
  private readonly delayedAckMs: number;
  private readonly clientAckEveryMs: number;
  private readonly zeroWindowAckGapMs: number;
  private readonly pendingKeepaliveMs: number;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private muted = false;
  /** Inside {@link handle}: unchanged accepts may wait for one batch verdict. */
  private batching = false;
  /** The highest id of the unchanged accepts waiting for that verdict. */
  private batchThrough: number | null = null;
  /** Ids of packets held in the queue (see {@link hold}). */
  private readonly waiting = new Set<number>();

  constructor(private readonly opts: RecorderOptions) {
    this.ack = opts.ack ?? 'eager';
    if ((this.ack === 'eager' || this.ack === 'delayed') && !opts.injector) {
      throw new FtcpError(ErrorCode.BAD_CONFIG, `the ${this.ack} ack strategy injects ACKs: give the recorder an injector`);
    }
    this.delayedAckMs = opts.delayedAckMs ?? 40;
    this.clientAckEveryMs = opts.clientAckEveryMs ?? 10;
    this.zeroWindowAckGapMs = opts.zeroWindowAckGapMs ?? 100;
    this.pendingKeepaliveMs = opts.pendingKeepaliveMs ?? 1000;
    for (const [name, v] of [
      ['zeroWindowAckGapMs', this.zeroWindowAckGapMs],
      ['pendingKeepaliveMs', this.pendingKeepaliveMs],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new FtcpError(ErrorCode.BAD_CONFIG, `${name} must be a positive integer, got ${v}`);
    }
    this.nextConnId = opts.firstConnId ?? null;
  }

  /**
   * Take over connections of a dead primary, before the VIP moves to this
   * host (so no segment of theirs reaches a kernel without their socket).
   * Each becomes `pending`: its segments are dropped and answered, at most
   * every `zeroWindowAckGapMs`, with a zero-window ACK at stable-seq, and a
   * keep-alive goes out every `pendingKeepaliveMs` (FT-TCP 2.3.1: a client
   * facing a zero window keeps probing instead of timing out, for however
   * long a cold roll-forward takes). Client bytes are logged to the
   * record's buffer connection at the same offsets, once live.
   *
   * The rebuilt socket must have its receive queue end at or past
   * `stableOffset` and its send queue start at `clientAckOffset`: the
   * pending ACKs already acknowledge stable-seq to the client. Its first
   * outgoing segment makes the connection `record`; then a window update and
   * {@link GO_LIVE_DUPLICATE_ACKS} duplicate ACKs tell the client to resend
   * what the dead primary never logged.
   *
   * Checks every entry before it changes anything.
   * @throws FtcpError `FTCP_ERR_BAD_CONFIG` for a bad entry or a recorder
   *   without an injector, `FTCP_ERR_CONFLICT` for a four-tuple or buffer
   *   connection id already followed (or twice in the list),
   *   `FTCP_ERR_TABLE_FULL` when the table cannot hold them all,
   *   `FTCP_ERR_CLOSED` after {@link close}.
   */
  adopt(list: readonly AdoptedConnection[]): void {
    if (this.closed) throw new FtcpError(ErrorCode.CLOSED, 'the recorder is closed');
    if (!this.opts.injector) throw new FtcpError(ErrorCode.BAD_CONFIG, 'adopted connections are answered with crafted ACKs: give the recorder an injector');
    const ids = new Set<string>();
    const bufferIds = new Set<number>([...this.tracked.values()].map((t) => t.bufferId));
    for (const a of list) {
      checkAdoptedConnection(a);
      const id = connId(adoptedKey(a));
      if (ids.has(id) || this.tracked.has(id) || this.opts.wrap.table.get(adoptedKey(a)) !== undefined) {
        throw new FtcpError(ErrorCode.CONFLICT, `connection ${a.rec.connId}: its four-tuple is already followed`);
      }
      if (bufferIds.has(a.rec.connId)) throw new FtcpError(ErrorCode.CONFLICT, `buffer connection ${a.rec.connId} is already followed`);
      ids.add(id);
      bufferIds.add(a.rec.connId);
    }
    const table = this.opts.wrap.table;
    if (table.size + list.length > table.maxEntries) table.sweep(true);
    if (table.size + list.length > table.maxEntries) {
      throw new FtcpError(SswErrorCode.TABLE_FULL, `cannot adopt ${list.length} connections: ${table.size} of ${table.maxEntries} entries are in use`);
    }
    for (const a of list) {
      const conn = this.opts.wrap.adopt(a);
      // Room was checked above and nothing ran in between.
      if (conn === undefined) throw new FtcpError(SswErrorCode.TABLE_FULL, `connection ${a.rec.connId}: the table is full`);
      this.tracked.set(
        conn.id,
        newTracked(a.rec.connId, conn, {
          recordWritten: true,
          stableOffset: a.stableOffset,
          clientAckLogged: a.clientAckOffset,
          tsEcrLogged: a.rec.timestamps ? a.clientTsEcr : undefined,
          windowLogged: a.clientWindow,
        }),
      );
      this.counters.adopted++;
    }
    if (list.length > 0) this.startKeepalive();
  }

  /**
   * Give up a pending connection whose socket could not be rebuilt: it is
   * forgotten and logged closed (`CloseReason.LOCAL`, so no later backup
   * rebuilds it), and its client's next segment reaches the kernel, which
   * resets it: the client sees an error instead of waiting forever.
   * Returns false when `bufferConnId` names no pending connection.
   */
  releasePending(bufferConnId: number): boolean {
    const t = this.byBufferId(bufferConnId);
    if (!t || t.conn.mode !== 'pending') return false;
    this.opts.wrap.table.delete(t.conn.key);
    t.closeLogged = true;
    this.counters.closesLogged++;
    this.counters.pendingReleased++;
    this.opts.buffer.writeClose({ connId: t.bufferId, reason: CloseReason.LOCAL }).catch(() => this.counters.logFailures++);
    this.forget(t.conn.id);
    return true;
  }

  /**
   * Rebuild a pending adopted connection that the replica never accepted
   * (its `accept` was not logged when the primary died) by a spoofed
   * handshake: see handshake-rebuild.ts. The kernel must own the service
   * address already (the spoofed SYN goes to it) and the live server must
   * listen. Resolves `ok: true` once the kernel has answered the spoofed
   * SYN: the connection is in its accept queue and the wrap maps the
   * kernel's ISN and TSvals to the client's. The stable client bytes (and
   * FIN) then go in as fast as the kernel's window lets them; after the last
   * the kernel's next segment makes the connection live as for any adopted
   * one. Resolves `ok: false`, changing nothing, when there is no such
   * pending connection or the old server had sent something on it (only an
   * accepted connection could have); and `ok: false` with the connection
   * released ({@link releasePending}: its client is reset rather than left
   * waiting) when the kernel answers none of {@link HANDSHAKE_SYN_TRIES}
   * SYNs or makes choices the wrap cannot map (see HandshakeRebuild). A
   * failure after success releases it too.
   */
  rebuildByHandshake(bufferConnId: number, input: HandshakeRebuildRequest): Promise<HandshakeRebuildResult> {
    const t = this.byBufferId(bufferConnId);
    const refuse = (reason: string): Promise<HandshakeRebuildResult> => {
      this.counters.handshakesFailed++;
      return Promise.resolve({ ok: false, reason });
    };
    if (!t || t.conn.mode !== 'pending' || !t.conn.adopted) return refuse(`buffer connection ${bufferConnId} is not a pending adopted connection`);
    if (t.handshake) return refuse(`buffer connection ${bufferConnId}: a handshake rebuild is already under way`);
    if (t.clientAckLogged !== 0) return refuse(`buffer connection ${bufferConnId}: the client acknowledged ${t.clientAckLogged} server bytes, so the old server had accepted it`);
    if (!this.canInject()) return refuse('nothing can be injected (no injector, muted or closed)');
    const c = t.conn;
    return new Promise((resolve) => {
      let settled = false;
      const h: HandshakeInFlight = {
        rebuild: new HandshakeRebuild(c, input, c.lastClientTsVal ?? input.clientSynTsVal),
        synsSent: 0,
        timer: null,
        settle: (r) => {
          if (h.timer) clearInterval(h.timer);
          h.timer = null;
          if (settled) return;
          settled = true;
          resolve(r);
        },
      };
      t.handshake = h;
      c.handshakeRebuild = true;
      const sendSyn = (): void => {
        if (t.handshake !== h) return h.settle({ ok: false, reason: 'the handshake rebuild was abandoned' });
        if (h.synsSent >= HANDSHAKE_SYN_TRIES) return this.endHandshake(t, `the kernel answered none of ${h.synsSent} spoofed SYNs`);
        h.synsSent++;
        this.inject(h.rebuild.syn());
      };
      h.timer = setInterval(sendSyn, HANDSHAKE_SYN_GAP_MS);
      h.timer.unref();
      sendSyn();
    });
  }

  /** A segment the kernel sent during a handshake rebuild: answer it with what it lets in now. */
  private onHandshakeSegment(c: Connection, pkt: TcpPacket): void {
    const t = this.tracked.get(c.id);
    const h = t?.handshake;
    if (!t || !h) return;
    const step = h.rebuild.onKernelSegment(pkt);
    if (!step.ok) return this.endHandshake(t, step.reason);
    if (step.done) {
      // The kernel's answer to the last segment (the probe) goes to the client and makes the connection live.
      c.handshakeRebuild = false;
      t.handshake = null;
    }
    for (const p of step.packets) {
      if (!this.inject(p)) return this.endHandshake(t, 'the raw socket refused a segment of the handshake rebuild');
    }
    if (step.established) h.settle({ ok: true });
    if (step.done) {
      h.settle({ ok: true });
      this.counters.handshakesRebuilt++;
    }
  }

  /**
   * A handshake rebuild that cannot go on: the caller learns it if it still
   * waits; one that already heard of success finds the connection released
   * (its client is reset rather than left waiting).
   */
  private endHandshake(t: Tracked, reason: string): void {
    const h = t.handshake;
    if (!h) return;
    t.handshake = null;
    t.conn.handshakeRebuild = false;
    this.counters.handshakesFailed++;
    h.settle({ ok: false, reason });
    this.releasePending(t.bufferId);
  }

  /** The followed connection logged as buffer connection `bufferConnId`, if any. */
  private byBufferId(bufferConnId: number): Tracked | undefined {
    for (const t of this.tracked.values()) if (t.bufferId === bufferConnId) return t;
    return undefined;
  }

  private allocConnId(): number {
    this.nextConnId ??= this.opts.buffer.epoch * 2 ** 32 + 1;
    return this.nextConnId++;
  }

  /**
   * Muted, this host says nothing for the service: every outgoing packet is
   * dropped and nothing is injected, while client segments are still logged
   * and delivered. A primary that lost the buffer mutes itself until it
   * learns whether it still reigns (DESIGN invariant 4: a backup may be
   * speaking already); unmuted again, each connection whose client is owed
   * an acknowledgement gets one at once.
   */
  mute(on: boolean): void {
    if (this.muted === on) return;
    this.muted = on;
    if (!on && (this.ack === 'eager' || this.ack === 'delayed')) for (const t of this.tracked.values()) this.injectAckIfDue(t.conn);
  }

  /**
   * Handles a batch from the queue, in order. Never throws: a bad packet is
   * dropped and counted. Packets accepted unchanged get their verdicts
   * together (see {@link PacketVerdicts.acceptThrough}), at the latest when
   * the batch ends; every other verdict is given after them, so packets
   * still leave in the order they came.
   */
  handle(packets: readonly RecordedPacket[]): void {
    this.batching = true;
    try {
      this.handleEach(packets);
    } finally {
      this.batching = false;
      this.flushBatch();
    }
  }

  /**
   * A packet left in the queue without a verdict (a SYN-ACK waiting for its
   * record, a pending connection's head segment): while any is, a batch
   * verdict would accept it too, so every packet gets its own.
   */
  private hold(id: number): void {
    this.flushBatch();
    this.waiting.add(id);
  }

  private handleEach(packets: readonly RecordedPacket[]): void {
    for (const p of packets) {
      if (this.closed) {
        this.drop(p.id);
        continue;
      }
      const meta = { checksumPartial: p.checksumPartial, truncatedOk: p.truncatedOk ?? true };
      const outgoing = p.hook === HOOK_LOCAL_OUT;
      const v = outgoing ? this.opts.wrap.outgoing(p.payload, meta) : this.opts.wrap.incoming(p.payload, meta);
      // Muted, the segment still tells the wrap what the kernel acknowledged
      // (for the ACK owed at unmute); the kernel resends what is lost.
      if (outgoing && this.muted) {
        this.drop(p.id);
        this.counters.mutedDrops++;
      } else if (outgoing) this.onOutgoing(p, v);
      else this.onIncoming(p, v);
    }
  }

  private give(p: RecordedPacket, v: Verdict): void {
    if (v.verdict !== 'accept') this.drop(p.id);
    else if (v.modified) this.accept(p.id, { payload: p.payload });
    else if (this.batching && this.waiting.size === 0 && this.opts.verdicts.acceptThrough) this.batchThrough = p.id;
    else this.accept(p.id);
  }

  /** One packet's accept, after the pending batch (so packets leave in the order they came). */
  private accept(id: number, opts?: { payload?: Uint8Array }): void {
    this.flushBatch();
    this.waiting.delete(id);
    this.opts.verdicts.accept(id, opts ?? {});
  }

  private drop(id: number): void {
    this.flushBatch();
    this.waiting.delete(id);
    this.opts.verdicts.drop(id);
  }

  /** Accepts, in one message, the run of unchanged packets the current batch has accepted so far. */
  private flushBatch(): void {
    const through = this.batchThrough;
    if (through === null) return;
    this.batchThrough = null;
    this.opts.verdicts.acceptThrough?.(through);
  }

  private track(conn: Connection): Tracked {
    let t = this.tracked.get(conn.id);
    if (t && t.conn !== conn) {
      // A new connection on the four-tuple of a closed one (the wrap took a
      // new SYN there): the old entry, kept for late retransmissions, gives
      // way, or the new SYN-ACK would wait for a record never written.
      this.forget(conn.id);
      t = undefined;
    }
    if (!t) {
      t = newTracked(this.allocConnId(), conn, { recordWritten: false, stableOffset: 0, clientAckLogged: 0, tsEcrLogged: undefined, windowLogged: undefined });
      this.tracked.set(conn.id, t);
    }
    return t;
  }

  private onOutgoing(p: RecordedPacket, v: Verdict): void {
    if (v.verdict === 'hold') {
      // The SYN-ACK: log the connection record, release the SYN-ACK when it is stable.
      const t = this.track(v.conn);
      this.hold(p.id);
      t.held.push({ id: p.id, payload: p.payload, checksumPartial: p.checksumPartial });
      this.counters.synAcksHeld++;
      if (!t.recordWritten) this.writeConnection(t);
      return;
    }
    this.give(p, v);
    if (v.verdict === 'drop' && v.reason === 'handshake-rebuild' && v.conn && v.packet) {
      this.onHandshakeSegment(v.conn, v.packet);
      return;
    }
    if (v.wentLive && v.conn) {
      this.sendGoLiveAcks(v.conn);
      this.deliverHead(v.conn);
    }
    if (v.verdict === 'accept' && v.conn) this.afterSegment(v.conn);
  }

  private onIncoming(p: RecordedPacket, v: Verdict): void {
    if (v.verdict === 'drop' && v.reason === 'pending' && v.conn) {
      const t = this.tracked.get(v.conn.id);
      if (t && v.packet && this.holdHead(t, p, v.packet)) {
        // Held, not dropped: answered all the same.
      } else {
        this.drop(p.id);
      }
      if (t) {
        this.noteClientAck(t);
        this.answerPending(t);
      }
      return;
    }
    if (v.verdict !== 'accept' || !v.conn || !v.packet) {
      this.give(p, v);
      return;
    }
    const conn = v.conn;
    const pkt = v.packet;
    const t = this.tracked.get(conn.id);
    const carries = pkt.payloadLength > 0 || (pkt.flags & (TcpFlag.FIN | TcpFlag.RST)) !== 0;
    let logged: Promise<unknown> | undefined;
    if (v.log && carries && (pkt.flags & TcpFlag.SYN) === 0 && t?.recordWritten && conn.clientIsn !== undefined) {
      if (pkt.truncated) {
        // Bytes we cannot log must not reach the server: the client resends them.
        this.counters.truncatedDropped++;
        this.drop(p.id);
        return;
      }
      // No copy: the queue hands each packet over in a buffer of its own, and
      // the buffer client copies the bytes into its frame at once.
      const bytes = Buffer.from(pkt.buf.buffer, pkt.buf.byteOffset + pkt.payloadOffset, pkt.payloadLength);
      logged = this.logSegment(t, conn.clientIsn, pkt.seq, pkt.flags, bytes);
    }
    // Logged first, verdict second: the ordered channel already holds the bytes
    // (under hold, the verdict waits for the buffer's acknowledgement).
    if (this.ack === 'hold' && logged) this.holdUntilLogged(p, v, logged);
    else this.give(p, v);
    if (t) {
      this.noteClientAck(t);
      this.afterSegment(conn);
    }
  }

  private writeConnection(t: Tracked): void {
    const c = t.conn;
    if (c.clientIsn === undefined || c.serverIsn === undefined) return;
    t.recordWritten = true;
    const ts = timestampsNegotiated(c);
    this.opts.buffer
      .writeConn({
        connId: t.bufferId,
        clientIp: c.key.clientAddr,
        serverIp: c.key.serverAddr,
        clientPort: c.key.clientPort,
        serverPort: c.key.serverPort,
        clientIsn: c.clientIsn,
        serverIsn: c.serverIsn,
        mss: c.clientSyn?.mss ?? 536,
        clientWscale: incomingWindowShift(c),
        serverWscale: outgoingWindowShift(c),
        sackOk: sackNegotiated(c),
        timestamps: ts,
        clientTsval: ts ? (c.lastClientTsVal ?? 0) : 0,
        serverTsval: ts ? (c.lastTsValSent ?? 0) : 0,
      })
      .then(
        () => {
          this.counters.connectionsLogged++;
          markHandshakeStable(c);
          this.releaseHeld(t);
        },
        () => {
          this.counters.logFailures++;
          t.recordWritten = false;
          // The held SYN-ACKs are dropped: the kernel retransmits, and we try again.
          for (const h of t.held.splice(0)) this.drop(h.id);
        },
      );
  }

  private releaseHeld(t: Tracked): void {
    for (const h of t.held.splice(0)) {
      const v = this.opts.wrap.outgoing(h.payload, { checksumPartial: h.checksumPartial, truncatedOk: true });
      if (v.verdict === 'hold') this.drop(h.id); // cannot happen once stable; never let it out unstable
      else this.give({ id: h.id, hook: HOOK_LOCAL_OUT, payload: h.payload, checksumPartial: h.checksumPartial }, v);
    }
  }

  /**
   * `hold`: the segment stays in the queue until the buffer acknowledged its
   * write (then the kernel may acknowledge it), and is dropped if the write
   * failed (the client resends it). Writes are acknowledged in order, so
   * held segments reach the kernel in the order they came.
   */
  private holdUntilLogged(p: RecordedPacket, v: Verdict, logged: Promise<unknown>): void {
    this.hold(p.id);
    logged.then(
      () => {
        if (!this.closed) this.give(p, v);
      },
      () => {
        if (!this.closed) this.drop(p.id);
      },
    );
  }

  /** Sends a client segment to the buffer; the write's promise, or undefined when there was nothing to log. */
  private logSegment(t: Tracked, clientIsn: SeqNum, s: SeqNum, tcpFlags: number, payload: Buffer): Promise<unknown> | undefined {
    const offset = seqToOffset(s, clientIsn, t.stableOffset);
    if (offset < 0) return undefined; // before the first byte: a stale retransmission of the SYN's space
    let flags = 0;
    if (tcpFlags & TcpFlag.FIN) flags |= SegFlag.FIN;
    if (tcpFlags & TcpFlag.RST) flags |= SegFlag.RST;
    if (tcpFlags & TcpFlag.PSH) flags |= SegFlag.PSH;
    // A bare RST occupies no sequence space: it must not count as bytes received.
    const end = offset + payload.length + (tcpFlags & TcpFlag.FIN ? 1 : 0);
    if (end > t.loggedEnd && end > offset) t.loggedEnd = end;
    this.counters.segmentsLogged++;
    this.counters.bytesLogged += payload.length;
    const written = this.opts.buffer.writeSegment({ connId: t.bufferId, offset, flags, payload });
    written.then(
      (a) => this.onStable(t, a.stableOffset, seq(a.stableSeq)),
      () => {
        // Unlogged bytes stay unacknowledged: the client retransmits them and
        // they are logged again. Nothing is lost, the connection only waits.
        this.counters.logFailures++;
      },
    );
    return written;
  }

  private onStable(t: Tracked, stableOffset: number, stableSeq: SeqNum): void {
    if (stableOffset <= t.stableOffset) return;
    t.stableOffset = stableOffset;
    advanceStable(t.conn, stableSeq);
    if (this.ack === 'eager') this.injectAckIfDue(t.conn);
    else if (this.ack === 'delayed' && !t.delayedTimer) {
      t.delayedTimer = setTimeout(() => {
        t.delayedTimer = null;
        this.injectAckIfDue(t.conn);
      }, this.delayedAckMs);
    }
  }

  private injectAckIfDue(c: Connection): void {
    if (this.closed || !ackIsDue(c)) return;
    if (this.canInject() && this.inject(craftAck(c))) this.counters.acksInjected++;
  }

  /**
   * Whether a crafted packet would go out now. Asked before crafting, since
   * crafting records the ack and window as sent.
   */
  private canInject(): boolean {
    return !this.closed && !this.muted && this.opts.injector !== undefined;
  }

  /** Sends a crafted packet; a refusal is counted, never thrown (the per-packet path must not throw). */
  private inject(packet: Buffer): boolean {
    const injector = this.opts.injector;
    if (!this.canInject() || !injector) return false;
    try {
      injector.send(packet);
      return true;
    } catch {
      this.counters.injectFailures++;
      return false;
    }
  }

  /** Answers a pending connection's segment with a zero-window ACK, at most every `zeroWindowAckGapMs`. */
  private answerPending(t: Tracked): void {
    const now = this.opts.wrap.table.now();
    if (now - t.lastZeroWindowAckAt >= this.zeroWindowAckGapMs) this.sendZeroWindowAck(t, now);
  }

  /**
   * A zero-window ACK at stable-seq (FT-TCP 2.3.1): it acknowledges nothing
   * the buffer does not hold (invariant 1) and lets no new data in. A Linux
   * client that takes it as a window update (`tcp_may_update_window`)
   * retransmits as zero-window probes and does not time out the connection
   * while ACKs keep arriving (`tcp_retransmit_timer`); one that does not
   * (its last window came from a segment at our seq) keeps its ordinary
   * retransmission timer, which gives up only after `tcp_retries2`, about
   * 15 minutes. Either way it never sees its bytes acknowledged unlogged.
   * Measured on Linux 6.18, the ACKs do not change when it retransmits.
   */
  private sendZeroWindowAck(t: Tracked, now: number): void {
    t.lastZeroWindowAckAt = now;
    if (this.canInject() && this.inject(craftAck(t.conn, { zeroWindow: true }))) this.counters.zeroWindowAcks++;
  }

  private startKeepalive(): void {
    if (this.keepaliveTimer || this.closed) return;
    this.keepaliveTimer = setInterval(() => this.keepPendingAlive(), this.pendingKeepaliveMs);
    // The queue keeps the process alive; this timer alone must not.
    this.keepaliveTimer.unref();
  }

  /**
   * One zero-window keep-alive to every pending client not answered within
   * the gap; stops the timer when none is left. The timer calls it; a
   * backup calls it once more as soon as the VIP is its own, because a
   * client that stopped retransmitting (backed off, or about to give up)
   * would otherwise hear nothing until the next tick, up to
   * `pendingKeepaliveMs` later.
   */
  keepPendingAlive(): void {
    const now = this.opts.wrap.table.now();
    let pending = 0;
    for (const t of [...this.tracked.values()]) {
      if (t.conn.mode !== 'pending') continue;
      if (this.opts.wrap.table.get(t.conn.key) !== t.conn) {
        // The table collected it (idle, for room): nothing is left to keep alive.
        this.forget(t.conn.id);
        continue;
      }
      pending++;
      if (now - t.lastZeroWindowAckAt >= this.zeroWindowAckGapMs) this.sendZeroWindowAck(t, now);
    }
    if (pending === 0 && this.keepaliveTimer) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
  }

  /**
   * The rebuilt socket of `c` has sent its first segment. Our zero-window
   * ACKs may have closed the client's window; a window update (an ACK at
   * stable-seq whose window reaches the kernel's right edge, learnt from that
   * segment) opens it, so the client sends again at once instead of waiting
   * for its persist timer, which backs off like the RTO. Then duplicates of
   * it, for the client to resend what the dead primary never logged (see
   * {@link GO_LIVE_DUPLICATE_ACKS} for when Linux acts on them). Their seq is
   * the client's receive edge, so Linux accepts them however far the new
   * socket lags (`craftedSeqNumber`).
   */
  private sendGoLiveAcks(c: Connection): void {
    if (c.sndNxt === undefined || !this.canInject()) return;
    const ack = craftAck(c);
    for (let i = 0; i <= GO_LIVE_DUPLICATE_ACKS; i++) {
      if (this.inject(ack)) this.counters.goLiveAcks++;
    }
  }

  /**
   * While a connection is pending, keeps in the queue the client's latest
   * segment that carries the byte at stable-seq: the retransmission of the
   * first byte the dead primary never logged. A client that has had a
   * retransmission timeout (every client of a cold takeover) resends only on
   * its timer, backed off to seconds, and ignores duplicate ACKs; delivered
   * to the rebuilt socket the moment it is live, that one segment is
   * acknowledged as new data at once, which ends the client's loss recovery
   * without waiting for its next timeout. An older held one is dropped.
   */
  private holdHead(t: Tracked, p: RecordedPacket, pkt: TcpPacket): boolean {
    if (pkt.payloadLength === 0 || (pkt.flags & (TcpFlag.SYN | TcpFlag.RST)) !== 0) return false;
    // It must carry the byte at stable-seq: the client may resend from below it (bytes logged but never acknowledged).
    const stable = t.conn.stableSeq;
    if (seqGt(pkt.seq, stable) || !seqLt(stable, seqAdd(pkt.seq, pkt.payloadLength))) return false;
    if (t.heldHead) this.drop(t.heldHead.id);
    this.hold(p.id);
    t.heldHead = p;
    return true;
  }

  /** The rebuilt socket is live: its held head segment goes in, logged first like any other. */
  private deliverHead(c: Connection): void {
    const t = this.tracked.get(c.id);
    const p = t?.heldHead;
    if (!t || !p) return;
    t.heldHead = null;
    this.counters.headsDelivered++;
    const meta = { checksumPartial: p.checksumPartial, truncatedOk: p.truncatedOk ?? true };
    this.onIncoming(p, this.opts.wrap.incoming(p.payload, meta));
  }

  /** Logs the client's ack, window and TSecr high-water marks, at most every `clientAckEveryMs`. */
  private noteClientAck(t: Tracked): void {
    if (t.clientAckTimer || t.conn.clientAckHigh === undefined) return;
    t.clientAckTimer = setTimeout(() => {
      t.clientAckTimer = null;
      this.writeClientAck(t);
    }, this.clientAckEveryMs);
  }

  /**
   * Writes a client-ack record when it says something new: the ack moved (a
   * backup trims its send buffers by it); the TSecr moved (a rebuilt socket
   * must send TSvals at or past it, or the client's PAWS check drops them,
   * RFC 7323 5.3, so the logged value must be current); or the window changed
   * notably (see {@link windowChangedNotably}): a rebuilt socket starts with
   * it and learns the real one from the client's next segment.
   */
  private writeClientAck(t: Tracked): void {
    const c = t.conn;
    if (this.closed || c.clientAckHigh === undefined || c.serverIsn === undefined) return;
    const ackOffset = Math.max(t.clientAckLogged, seqToOffset(c.clientAckHigh, c.serverIsn, t.clientAckLogged));
    const window = c.clientRightEdgeHigh === undefined ? 0 : seqForward(c.clientRightEdgeHigh, c.clientAckHigh);
    const tsEcr = c.clientTsEcrHigh;
    const ackMoved = ackOffset > t.clientAckLogged;
    const tsEcrMoved = tsEcr !== undefined && (t.tsEcrLogged === undefined || u32Diff(tsEcr, t.tsEcrLogged) > 0);
    if (!ackMoved && !tsEcrMoved && !windowChangedNotably(t.windowLogged, window)) return;
    t.clientAckLogged = ackOffset;
    t.windowLogged = window;
    if (tsEcr !== undefined) t.tsEcrLogged = tsEcr;
    this.counters.clientAcksLogged++;
    this.opts.buffer.writeClientAck({ connId: t.bufferId, ackOffset, window, tsEcr: tsEcr ?? 0 }).catch(() => this.counters.logFailures++);
  }

  private afterSegment(c: Connection): void {
    const t = this.tracked.get(c.id);
    if (!t || t.closeLogged) return;
    if (c.closedAt === undefined && !c.reset) return;
    t.closeLogged = true;
    this.counters.closesLogged++;
    if (t.recordWritten) {
      this.opts.buffer.writeClose({ connId: t.bufferId, reason: c.reset ? CloseReason.RST : CloseReason.FIN }).catch(() => this.counters.logFailures++);
    }
    // Keep the entry a while: late retransmissions still map. Only this
    // connection's: a new one on the same four-tuple has its own by then.
    setTimeout(() => {
      if (this.tracked.get(c.id) === t) this.forget(c.id);
    }, 10_000).unref();
  }

  private forget(id: string): void {
    const t = this.tracked.get(id);
    if (!t) return;
    if (t.heldHead) this.drop(t.heldHead.id);
    // SYN-ACKs still waiting for the record: a packet left without a verdict holds a queue slot for good.
    for (const h of t.held) this.drop(h.id);
    t.held = [];
    t.handshake?.settle({ ok: false, reason: 'the connection was forgotten' });
    t.handshake = null;
    if (t.clientAckTimer) clearTimeout(t.clientAckTimer);
    if (t.delayedTimer) clearTimeout(t.delayedTimer);
    this.tracked.delete(id);
  }

  /** Connections the recorder follows (for status output). */
  get connections(): number {
    return this.tracked.size;
  }

  /** Per connection: the buffer's id and the stable offset (client bytes logged, FIN counted). */
  stableOffsets(): { connId: number; stableOffset: number }[] {
    return [...this.tracked.values()].map((t) => ({ connId: t.bufferId, stableOffset: t.stableOffset }));
  }

  /**
   * Stable-seq lag: client bytes (a FIN counted) sent to the buffer and not
   * yet acknowledged as stable, in total and for the `limit` connections
   * that lag most (most first, then by buffer connection id), so a report
   * stays small however many connections there are. Bytes whose write
   * failed count until the client's retransmission is logged. For status
   * output: it walks every connection.
   */
  stableLag(limit = STABLE_LAG_LISTED): StableLag {
    let totalBytes = 0;
    const all: ConnectionLag[] = [];
    for (const t of this.tracked.values()) {
      const lagBytes = Math.max(0, t.loggedEnd - t.stableOffset);
      totalBytes += lagBytes;
      all.push({ connId: t.bufferId, client: `${formatIpv4Address(t.conn.key.clientAddr)}:${t.conn.key.clientPort}`, lagBytes, clientAcked: this.clientAcked(t) });
    }
    all.sort((a, b) => b.lagBytes - a.lagBytes || a.connId - b.connId);
    return { totalBytes, connections: all.slice(0, Math.max(0, limit)) };
  }

  /** Server bytes the client has acknowledged, as an offset (what the next client-ack record will say). */
  private clientAcked(t: Tracked): number {
    const c = t.conn;
    if (c.clientAckHigh === undefined || c.serverIsn === undefined) return t.clientAckLogged;
    return Math.max(t.clientAckLogged, seqToOffset(c.clientAckHigh, c.serverIsn, t.clientAckLogged));
  }

  /** Packets left in the queue without a verdict (held SYN-ACKs, heads, `hold` segments). */
  get packetsHeld(): number {
    return this.waiting.size;
  }

  /** Connections still waiting for their rebuilt socket. */
  get pending(): number {
    let n = 0;
    for (const t of this.tracked.values()) if (t.conn.mode === 'pending') n++;
    return n;
  }

  /** Stops: later packets are dropped (fail closed); timers are cleared. */
  close(): void {
    this.closed = true;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
    for (const id of [...this.tracked.keys()]) this.forget(id);
  }
}

/**
 * True when the client's window changed enough to log: to or from zero
 * (a stalled or resumed reader), or by at least a quarter of the last
 * logged value. Smaller moves happen on nearly every ACK and tell a
 * rebuilt socket nothing it will not learn from the client's next segment.
 */
export function windowChangedNotably(logged: number | undefined, now: number): boolean {
  if (logged === undefined) return true;
  if ((logged === 0) !== (now === 0)) return true;
  return Math.abs(now - logged) * 4 >= logged && now !== logged;
}
