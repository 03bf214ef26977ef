/**
 * The south-side wrap's decision core: parse a packet, find its connection,
 * rewrite it, and return a verdict, counting everything an operator asks
 * about. Pure and synchronous: the NFQUEUE adapter feeds it bytes and
 * applies its verdicts; the recorder reads `log` and feeds stable-seq back
 * through {@link advanceStable}.
 */
import type { AdoptedConnection, ConnKey, ConnMode, Connection, ConnTableOptions } from './conntable.js';
import { ConnTable, goLive } from './conntable.js';
import { incomingEnd, rewriteIncoming, rewriteOutgoing } from './rewrite.js';
import { offsetToSeq, seqForward, seqGt } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import { completeTcpChecksum, parseTcpPacket, TcpFlag } from './wire/tcp.js';
import type { MalformedReason, TcpPacket } from './wire/tcp.js';

/** Per-packet facts from the queue that are not in the bytes. */
export interface PacketMeta {
  /** The TCP checksum field is partial (NFQUEUE `NFQA_SKB_CSUMNOTREADY`). */
  checksumPartial?: boolean;
  /**
   * The bytes may be a truncated capture of a kernel-validated packet
   * (NFQUEUE copy range). A truncated packet that needs no rewrite is
   * accepted as is; one that needs a rewrite is dropped (`truncated`),
   * because handing back the short bytes would cut the packet, and a
   * partial checksum could not be completed. Keep packets on the service
   * interface under 65531 bytes (MTU, `gso_max_size`, `gro_max_size`).
   */
  truncatedOk?: boolean;
}

/** Why the wrap dropped a packet. */
export type DropReason =
  | 'malformed'
  | 'pending'
  | 'silent'
  | 'suppressed'
  | 'unknown-connection'
  | 'table-full'
  | 'truncated'
  /** Outgoing: the kernel's segment during a handshake rebuild (see handshake-rebuild.ts), with `conn` and `packet`. */
  | 'handshake-rebuild';

/** The wrap's verdict on one packet. */
export type Verdict =
  | {
      readonly verdict: 'accept';
      /** The bytes were rewritten in place; send them with the verdict. */
      readonly modified: boolean;
      /** The parsed packet, when it parsed. */
      readonly packet: TcpPacket | undefined;
      readonly conn: Connection | undefined;
      /**
       * Incoming only: log this segment to the stable buffer; stable-seq may
       * then advance to `end` (client view).
       */
      readonly log: boolean;
      readonly end: SeqNum | undefined;
      /**
       * Outgoing only: the first segment of a `pending` connection, sent by
       * its rebuilt socket; the connection is `record` from now on.
       */
      readonly wentLive: boolean;
    }
  | {
      readonly verdict: 'drop';
      readonly reason: DropReason;
      readonly malformed?: MalformedReason;
      /**
       * With reason `pending`: the connection, whose client waits for an
       * answer. Outgoing, when `wentLive`: the connection.
       */
      readonly conn?: Connection;
      /** With reason `pending`: the parsed segment (client view); with `handshake-rebuild`, the kernel's segment (kernel view). */
      readonly packet?: TcpPacket;
      /** Outgoing: as in `accept`; the going-live segment itself was dropped (suppressed or truncated). */
      readonly wentLive?: boolean;
    }
  | { readonly verdict: 'hold'; readonly reason: 'handshake-unstable'; readonly conn: Connection; readonly packet: TcpPacket };

/** Counters of the wrap, all monotonic. */
export interface WrapCounters {
  incoming: number;
  outgoing: number;
  rewritten: number;
  /** Malformed packets by reason; each one was dropped. */
  malformed: Partial<Record<MalformedReason, number>>;
  malformedTotal: number;
  suppressed: number;
  silentDropped: number;
  unknownConnection: number;
  tableFull: number;
  /** Truncated captures that needed a rewrite and were dropped. */
  truncatedDropped: number;
  windowCapped: number;
  held: number;
  opened: number;
  collected: number;
  /** Connections adopted from a dead primary (see {@link SouthSideWrap.adopt}). */
  adopted: number;
  /** Adopted connections whose rebuilt socket sent its first segment. */
  wentLive: number;
  /** Incoming segments of pending connections, dropped. */
  pendingDropped: number;
  /** Incoming acks of adopted connections lowered to the local send edge. */
  acksClamped: number;
  /** Incoming SACK blocks of adopted connections removed for reaching past the send edge. */
  sackBlocksDropped: number;
  /** Outgoing bare ACKs of adopted connections raised to the client's receive edge. */
  seqsLifted: number;
  /** The kernel's segments during handshake rebuilds, taken by the wrap (see handshake-rebuild.ts). */
  handshakeSegments: number;
}

/** What {@link SouthSideWrap.status} reports. */
export interface WrapStatus {
  connections: number;
  byMode: Record<ConnMode, number>;
  /** Bytes acknowledged by the kernel but not yet stable, over all connections. */
  stableLagBytes: number;
  /** The largest such lag of one connection, in bytes. */
  maxStableLagBytes: number;
}

/** Settings of a {@link SouthSideWrap}. */
export interface WrapOptions extends ConnTableOptions {
  /** Mode of connections opened by a client SYN: `record` on a primary, `silent` on a backup. Default `record`. */
  mode?: ConnMode;
  /** Run the table's sweep at most this often, in ms. Default 1000. */
  sweepIntervalMs?: number;
  /**
   * Called when a client SYN opens a connection, before the SYN is
   * rewritten: the place to set deltas or register the connection with the
   * recorder. Must not throw.
   */
  onOpen?: (conn: Connection) => void;
}

/**
 * The decision core of the south-side wrap for one service.
 *
 * Incoming packets (client to server) open a connection on a client SYN,
 * are mapped to the kernel's view and accepted; ones for unknown
 * connections pass unchanged (the kernel answers them with RST, which is
 * then let out). Outgoing packets of unknown connections are dropped unless
 * they are RSTs. Connections adopted from a dead primary ({@link SouthSideWrap.adopt}) are
 * `pending` until their rebuilt socket sends: their incoming segments are
 * dropped (`pending`, with the connection, so the caller can answer the
 * client), and the first outgoing one says `wentLive`. Malformed packets
 * are dropped and counted, never thrown (DESIGN invariant 6). A rewritten
 * packet always leaves with a full TCP checksum, even if it came with a
 * partial one (see `completeTcpChecksum`).
 */
export class SouthSideWrap {
  readonly table: ConnTable;
  readonly counters: WrapCounters = {
    incoming: 0,
    outgoing: 0,
    rewritten: 0,
    malformed: {},
    malformedTotal: 0,
    suppressed: 0,
    silentDropped: 0,
    unknownConnection: 0,
    tableFull: 0,
    truncatedDropped: 0,
    windowCapped: 0,
    held: 0,
    opened: 0,
    collected: 0,
    adopted: 0,
    wentLive: 0,
    pendingDropped: 0,
    acksClamped: 0,
    sackBlocksDropped: 0,
    seqsLifted: 0,
    handshakeSegments: 0,
  };
  private readonly mode: ConnMode;
  private readonly sweepIntervalMs: number;
  private readonly onOpen: ((conn: Connection) => void) | undefined;
  private lastSweep: number;

  constructor(opts: WrapOptions = {}) {
    this.table = new ConnTable(opts);
    this.mode = opts.mode ?? 'record';
    this.sweepIntervalMs = opts.sweepIntervalMs ?? 1000;
    this.onOpen = opts.onOpen;
    this.lastSweep = this.table.now();
  }

  /**
   * Take over a connection of a dead primary (a promoted backup, before the
   * VIP moves): it is opened `pending` (see `ConnMode`), replacing any
   * connection with its four-tuple. Returns undefined, counting `tableFull`,
   * when the table is full. Validate the input with `checkAdoptedConnection`.
   */
  adopt(a: AdoptedConnection): Connection | undefined {
    const conn = this.table.adopt(a);
    if (conn === undefined) {
      this.counters.tableFull++;
      return undefined;
    }
    this.counters.adopted++;
    return conn;
  }

  /**
   * The send edge (snd_nxt) the rebuilt socket of an adopted, still pending
   * connection starts from: the server offset it starts acknowledged at
   * (the unacknowledged outstream is written after it leaves TCP_REPAIR, as
   * ordinary sends, and the edge follows the segments the kernel sends).
   * Adoption assumes the client's logged ack; a replica whose last send
   * calls were never logged starts behind it and sends those bytes again
   * live. Client acks are clamped to the kernel's edge (rewriteIncoming):
   * an ack past it Linux drops whole, as one of unsent data, window update
   * and all, and once the gap exceeds the window the connection never moves
   * again. Returns false when no pending adopted connection has that
   * four-tuple.
   */
  setRebuiltSendEdge(key: ConnKey, sendEdgeOffset: number): boolean {
    const conn = this.table.get(key);
    if (conn === undefined || !conn.adopted || conn.mode !== 'pending' || conn.serverIsn === undefined) return false;
    conn.sndNxt = offsetToSeq(sendEdgeOffset, conn.serverIsn);
    return true;
  }

  /** Decide on a packet from the client to the server. Rewrites `buf` in place. */
  incoming(buf: Uint8Array, meta: PacketMeta = {}): Verdict {
    this.counters.incoming++;
    this.maybeSweep();
    const r = parseTcpPacket(buf, { checksumPartial: meta.checksumPartial ?? false, allowTruncated: meta.truncatedOk ?? false });
    if (!r.ok) return this.malformed(r.reason);
    const pkt = r.packet;
    const key: ConnKey = { clientAddr: pkt.ip.src, clientPort: pkt.srcPort, serverAddr: pkt.ip.dst, serverPort: pkt.dstPort };
    let conn = this.table.get(key);
    const isSyn = (pkt.flags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN;
    if (isSyn && conn !== undefined && conn.clientIsn !== pkt.seq && conn.closedAt !== undefined) {
      // A new SYN on a closed four-tuple (port reuse, RFC 9293 3.6.1).
      this.table.delete(key);
      conn = undefined;
    }
    if (conn === undefined) {
      if (!isSyn) {
        this.counters.unknownConnection++;
        return { verdict: 'accept', modified: false, packet: pkt, conn: undefined, log: false, end: undefined, wentLive: false };
      }
      conn = this.table.open(key, { mode: this.mode, clientIsn: pkt.seq });
      if (conn === undefined) {
        this.counters.tableFull++;
        return { verdict: 'drop', reason: 'table-full' };
      }
      this.counters.opened++;
      this.onOpen?.(conn);
    }
    const clientSeq = pkt.seq; // before rewriteIncoming maps it to the kernel's view
    const end = incomingEnd(pkt);
    const d = rewriteIncoming(conn, pkt);
    if (d.verdict === 'drop') {
      // A pending connection: no FIN, RST or close is noted, as the kernel
      // never sees the segment; the client sends it again once we listen.
      this.table.touch(conn);
      this.counters.pendingDropped++;
      return { verdict: 'drop', reason: d.reason, conn, packet: pkt };
    }
    if (d.ackClamped) this.counters.acksClamped++;
    this.counters.sackBlocksDropped += d.sackBlocksDropped;
    if (d.modified && (pkt.truncated || !completeTcpChecksum(pkt))) {
      this.counters.truncatedDropped++;
      return { verdict: 'drop', reason: 'truncated' };
    }
    if (d.modified) this.counters.rewritten++;
    this.table.touch(conn);
    if (pkt.flags & TcpFlag.FIN) this.table.noteFin(conn, true);
    // The kernel honours a RST only at exactly RCV.NXT (RFC 5961 3.2) and
    // answers others with a challenge ACK; a blind or stale RST must not
    // drop the state of a live connection. RCV.NXT is the kernel's ack.
    if (pkt.flags & TcpFlag.RST && (conn.kernelAckHigh === undefined || clientSeq === conn.kernelAckHigh)) {
      this.table.noteReset(conn);
    }
    return { verdict: 'accept', modified: d.modified, packet: pkt, conn, log: d.log, end, wentLive: false };
  }

  /** Decide on a packet from the server to the client. Rewrites `buf` in place. */
  outgoing(buf: Uint8Array, meta: PacketMeta = {}): Verdict {
    this.counters.outgoing++;
    this.maybeSweep();
    const r = parseTcpPacket(buf, { checksumPartial: meta.checksumPartial ?? false, allowTruncated: meta.truncatedOk ?? false });
    if (!r.ok) return this.malformed(r.reason);
    const pkt = r.packet;
    const key: ConnKey = { clientAddr: pkt.ip.dst, clientPort: pkt.dstPort, serverAddr: pkt.ip.src, serverPort: pkt.srcPort };
    const conn = this.table.get(key);
    if (conn === undefined) {
      if (pkt.flags & TcpFlag.RST) return { verdict: 'accept', modified: false, packet: pkt, conn: undefined, log: false, end: undefined, wentLive: false };
      this.counters.unknownConnection++;
      return { verdict: 'drop', reason: 'unknown-connection' };
    }
    if (conn.handshakeRebuild) {
      this.counters.handshakeSegments++;
      return { verdict: 'drop', reason: 'handshake-rebuild', conn, packet: pkt };
    }
    if (conn.adopted && pkt.flags & TcpFlag.SYN) {
      // An adopted connection's client finished its handshake long ago: this
      // is a late retransmission of the kernel's answer to a spoofed SYN.
      this.counters.suppressed++;
      return { verdict: 'drop', reason: 'suppressed' };
    }
    const wentLive = goLive(conn);
    if (wentLive) this.counters.wentLive++;
    const d = rewriteOutgoing(conn, pkt);
    this.table.touch(conn);
    if (d.verdict === 'hold') {
      this.counters.held++;
      return { verdict: 'hold', reason: d.reason, conn, packet: pkt };
    }
    if (d.verdict === 'drop') {
      // A dropped FIN or RST never reached the client: the connection lives
      // on (a silent backup's kernel must not end a replicated connection).
      if (d.reason === 'silent') this.counters.silentDropped++;
      else this.counters.suppressed++;
      return wentLive ? { verdict: 'drop', reason: d.reason, conn, wentLive } : { verdict: 'drop', reason: d.reason };
    }
    if (d.modified && (pkt.truncated || !completeTcpChecksum(pkt))) {
      this.counters.truncatedDropped++;
      return wentLive ? { verdict: 'drop', reason: 'truncated', conn, wentLive } : { verdict: 'drop', reason: 'truncated' };
    }
    if (pkt.flags & TcpFlag.FIN) this.table.noteFin(conn, false);
    if (pkt.flags & TcpFlag.RST) this.table.noteReset(conn);
    if (d.modified) this.counters.rewritten++;
    if (d.windowCapped) this.counters.windowCapped++;
    if (d.seqLifted) this.counters.seqsLifted++;
    return { verdict: 'accept', modified: d.modified, packet: pkt, conn, log: false, end: undefined, wentLive };
  }

  /**
   * A snapshot for status output and incident questions: connections by
   * mode, and the stable-seq lag (bytes the local kernel has acknowledged
   * but the buffer has not yet made stable, so the client has not seen
   * acknowledged) summed and at its worst.
   */
  status(): WrapStatus {
    const byMode: Record<ConnMode, number> = { record: 0, silent: 0, pending: 0 };
    let lagTotal = 0;
    let lagMax = 0;
    for (const c of this.table.values()) {
      byMode[c.mode]++;
      if (c.kernelAckHigh !== undefined && seqGt(c.kernelAckHigh, c.stableSeq)) {
        const lag = seqForward(c.kernelAckHigh, c.stableSeq);
        lagTotal += lag;
        if (lag > lagMax) lagMax = lag;
      }
    }
    return { connections: this.table.size, byMode, stableLagBytes: lagTotal, maxStableLagBytes: lagMax };
  }

  private malformed(reason: MalformedReason): Verdict {
    this.counters.malformedTotal++;
    this.counters.malformed[reason] = (this.counters.malformed[reason] ?? 0) + 1;
    return { verdict: 'drop', reason: 'malformed', malformed: reason };
  }

  private maybeSweep(): void {
    const now = this.table.now();
    if (now - this.lastSweep < this.sweepIntervalMs) return;
    this.lastSweep = now;
    this.counters.collected += this.table.sweep();
  }
}
