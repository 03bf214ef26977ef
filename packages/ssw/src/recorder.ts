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
 * - `lazy`: never inject; the next segment the server sends carries it.
 */
import type { StableBufferClient } from '@ftcp/stable-buffer';
import { CloseReason, ErrorCode, FtcpError, SegFlag } from '@ftcp/stable-buffer';
import type { Connection } from './conntable.js';
import { advanceStable, incomingWindowShift, markHandshakeStable, outgoingWindowShift, sackNegotiated, timestampsNegotiated } from './conntable.js';
import { ackIsDue, craftAck } from './craft.js';
import type { SouthSideWrap, Verdict } from './wrap.js';
import { seq, seqForward, seqToOffset } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import { TcpFlag } from './wire/tcp.js';

/** When the client hears that the buffer logged its bytes. */
export type AckStrategy = 'eager' | 'delayed' | 'lazy';

/** Gives queued packets their verdicts; an {@link NfQueue} is one. */
export interface PacketVerdicts {
  accept(id: number, opts?: { payload?: Uint8Array; mark?: number }): void;
  drop(id: number): void;
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
  /** Attached as the writer of the current epoch. */
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
}

const HOOK_LOCAL_OUT = 3;

interface Tracked {
  bufferId: number;
  /** The connection record is on its way; the held SYN-ACKs wait for it. */
  held: { id: number; payload: Buffer; checksumPartial: boolean }[];
  conn: Connection;
  recordWritten: boolean;
  /** Offset of stable-seq, to unwrap sequence numbers near it. */
  stableOffset: number;
  clientAckLogged: number;
  clientAckTimer: NodeJS.Timeout | null;
  delayedTimer: NodeJS.Timeout | null;
  closeLogged: boolean;
}

export class Recorder {
  readonly counters: RecorderCounters = {
    segmentsLogged: 0,
    bytesLogged: 0,
    connectionsLogged: 0,
    synAcksHeld: 0,
    acksInjected: 0,
    logFailures: 0,
    truncatedDropped: 0,
    closesLogged: 0,
  };
  private readonly tracked = new Map<string, Tracked>();
  private nextConnId: number;
  private readonly ack: AckStrategy;
  private readonly delayedAckMs: number;
  private readonly clientAckEveryMs: number;
  private closed = false;

  constructor(private readonly opts: RecorderOptions) {
    this.ack = opts.ack ?? 'eager';
    if (this.ack !== 'lazy' && !opts.injector) {
      throw new FtcpError(ErrorCode.BAD_CONFIG, `the ${this.ack} ack strategy injects ACKs: give the recorder an injector`);
    }
    this.delayedAckMs = opts.delayedAckMs ?? 40;
    this.clientAckEveryMs = opts.clientAckEveryMs ?? 10;
    this.nextConnId = opts.firstConnId ?? opts.buffer.epoch * 2 ** 32 + 1;
  }

  /** Handles a batch from the queue, in order. Never throws: a bad packet is dropped and counted. */
  handle(packets: readonly RecordedPacket[]): void {
    for (const p of packets) {
      if (this.closed) {
        this.opts.verdicts.drop(p.id);
        continue;
      }
      const meta = { checksumPartial: p.checksumPartial, truncatedOk: p.truncatedOk ?? true };
      const outgoing = p.hook === HOOK_LOCAL_OUT;
      const v = outgoing ? this.opts.wrap.outgoing(p.payload, meta) : this.opts.wrap.incoming(p.payload, meta);
      if (outgoing) this.onOutgoing(p, v);
      else this.onIncoming(p, v);
    }
  }

  private give(p: RecordedPacket, v: Verdict): void {
    if (v.verdict === 'accept') this.opts.verdicts.accept(p.id, v.modified ? { payload: p.payload } : {});
    else this.opts.verdicts.drop(p.id);
  }

  private track(conn: Connection): Tracked {
    let t = this.tracked.get(conn.id);
    if (!t) {
      t = { bufferId: this.nextConnId++, held: [], conn, recordWritten: false, stableOffset: 0, clientAckLogged: 0, clientAckTimer: null, delayedTimer: null, closeLogged: false };
      this.tracked.set(conn.id, t);
    }
    return t;
  }

  private onOutgoing(p: RecordedPacket, v: Verdict): void {
    if (v.verdict === 'hold') {
      // The SYN-ACK: log the connection record, release the SYN-ACK when it is stable.
      const t = this.track(v.conn);
      t.held.push({ id: p.id, payload: p.payload, checksumPartial: p.checksumPartial });
      this.counters.synAcksHeld++;
      if (!t.recordWritten) this.writeConnection(t);
      return;
    }
    this.give(p, v);
    if (v.verdict === 'accept' && v.conn) this.afterSegment(v.conn);
  }

  private onIncoming(p: RecordedPacket, v: Verdict): void {
    if (v.verdict !== 'accept' || !v.conn || !v.packet) {
      this.give(p, v);
      return;
    }
    const conn = v.conn;
    const pkt = v.packet;
    const t = this.tracked.get(conn.id);
    const carries = pkt.payloadLength > 0 || (pkt.flags & (TcpFlag.FIN | TcpFlag.RST)) !== 0;
    if (v.log && carries && (pkt.flags & TcpFlag.SYN) === 0 && t?.recordWritten && conn.clientIsn !== undefined) {
      if (pkt.truncated) {
        // Bytes we cannot log must not reach the server: the client resends them.
        this.counters.truncatedDropped++;
        this.opts.verdicts.drop(p.id);
        return;
      }
      // No copy: the queue hands each packet over in a buffer of its own, and
      // the buffer client copies the bytes into its frame at once.
      const bytes = Buffer.from(pkt.buf.buffer, pkt.buf.byteOffset + pkt.payloadOffset, pkt.payloadLength);
      this.logSegment(t, conn.clientIsn, pkt.seq, pkt.flags, bytes);
    }
    // Logged first, verdict second: the ordered channel already holds the bytes.
    this.give(p, v);
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
          for (const h of t.held.splice(0)) this.opts.verdicts.drop(h.id);
        },
      );
  }

  private releaseHeld(t: Tracked): void {
    for (const h of t.held.splice(0)) {
      const v = this.opts.wrap.outgoing(h.payload, { checksumPartial: h.checksumPartial, truncatedOk: true });
      if (v.verdict === 'hold') this.opts.verdicts.drop(h.id); // cannot happen once stable; never let it out unstable
      else this.give({ id: h.id, hook: HOOK_LOCAL_OUT, payload: h.payload, checksumPartial: h.checksumPartial }, v);
    }
  }

  private logSegment(t: Tracked, clientIsn: SeqNum, s: SeqNum, tcpFlags: number, payload: Buffer): void {
    const offset = seqToOffset(s, clientIsn, t.stableOffset);
    if (offset < 0) return; // before the first byte: a stale retransmission of the SYN's space
    let flags = 0;
    if (tcpFlags & TcpFlag.FIN) flags |= SegFlag.FIN;
    if (tcpFlags & TcpFlag.RST) flags |= SegFlag.RST;
    if (tcpFlags & TcpFlag.PSH) flags |= SegFlag.PSH;
    this.counters.segmentsLogged++;
    this.counters.bytesLogged += payload.length;
    this.opts.buffer.writeSegment({ connId: t.bufferId, offset, flags, payload }).then(
      (a) => this.onStable(t, a.stableOffset, seq(a.stableSeq)),
      () => {
        // Unlogged bytes stay unacknowledged: the client retransmits them and
        // they are logged again. Nothing is lost, the connection only waits.
        this.counters.logFailures++;
      },
    );
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
    if (this.closed || !this.opts.injector || !ackIsDue(c)) return;
    this.opts.injector.send(craftAck(c));
    this.counters.acksInjected++;
  }

  /** Logs the client's ack and window high-water marks, at most every `clientAckEveryMs`. */
  private noteClientAck(t: Tracked): void {
    if (t.clientAckTimer || t.conn.clientAckHigh === undefined) return;
    t.clientAckTimer = setTimeout(() => {
      t.clientAckTimer = null;
      const c = t.conn;
      if (this.closed || c.clientAckHigh === undefined || c.serverIsn === undefined) return;
      const ackOffset = seqToOffset(c.clientAckHigh, c.serverIsn, t.clientAckLogged);
      if (ackOffset <= t.clientAckLogged) return;
      t.clientAckLogged = ackOffset;
      const window = c.clientRightEdgeHigh === undefined ? 0 : seqForward(c.clientAckHigh, c.clientRightEdgeHigh);
      this.opts.buffer.writeClientAck({ connId: t.bufferId, ackOffset, window, tsEcr: 0 }).catch(() => this.counters.logFailures++);
    }, this.clientAckEveryMs);
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
    // Keep the entry until the table collects the connection: late retransmissions still map.
    setTimeout(() => this.forget(c.id), 10_000).unref();
  }

  private forget(id: string): void {
    const t = this.tracked.get(id);
    if (!t) return;
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

  /** Stops: later packets are dropped (fail closed); timers are cleared. */
  close(): void {
    this.closed = true;
    for (const id of [...this.tracked.keys()]) this.forget(id);
  }
}
