/**
 * Per-segment rewriting of the south-side wrap (FT-TCP 3.3, 3.6, 3.11).
 * Pure: each function reads a parsed packet and its connection's state,
 * rewrites the packet in place (checksum updated incrementally by the
 * setters), updates the state, and says what to do with the packet.
 */
import type { Connection, SynOptions } from './conntable.js';
import { incomingWindowShift, outgoingWindowShift } from './conntable.js';
import { seqAdd, seqForward, seqGt, seqLt, seqMax, seqMin, u32Add, u32Max } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import { retainSackBlocks, segmentLength, setAck, setSackBlock, setSeq, setTsEcr, setTsVal, setWindow, TcpFlag } from './wire/tcp.js';
import type { TcpPacket } from './wire/tcp.js';

/** Largest value of the 16-bit window field. */
export const MAX_WINDOW_FIELD = 0xffff;

/** What to do with an outgoing (server to client) segment. */
export type OutgoingDecision =
  | {
      readonly verdict: 'accept';
      /** The packet bytes changed; send the rewritten packet. */
      readonly modified: boolean;
      /**
       * The window needed to keep the right edge exceeded 65535 scaled units
       * and was capped, so the advertised right edge is short of the target.
       */
      readonly windowCapped: boolean;
      /**
       * A bare ACK of an adopted connection left with its seq raised to the
       * client's receive edge (see {@link rewriteOutgoing} step 6).
       */
      readonly seqLifted: boolean;
    }
  | { readonly verdict: 'drop'; readonly reason: 'silent' | 'suppressed' }
  | { readonly verdict: 'hold'; readonly reason: 'handshake-unstable' };

/** What to do with an incoming (client to server) segment. */
export type IncomingDecision =
  | {
      readonly verdict: 'accept';
      readonly modified: boolean;
      /**
       * The segment carries data, SYN, FIN or RST and must be logged to the
       * stable buffer (FT-TCP 3.3); a bare ACK need not be.
       */
      readonly log: boolean;
      /** An adopted connection's ack was lowered to the local send edge. */
      readonly ackClamped: boolean;
      /** SACK blocks removed because they reach past the local send edge. */
      readonly sackBlocksDropped: number;
    }
  /**
   * A `pending` connection has no kernel socket yet: the kernel would answer
   * the segment with a RST, killing the client's connection.
   */
  | { readonly verdict: 'drop'; readonly reason: 'pending' };

/** The options a SYN offered, read from its parsed options. */
export function synOptionsOf(pkt: TcpPacket): SynOptions {
  return {
    mss: pkt.options.mss,
    windowScale: pkt.options.windowScale,
    sackPermitted: pkt.options.sackPermitted,
    timestamps: pkt.options.tsVal !== undefined,
  };
}

/**
 * Rewrite an outgoing segment of connection `c`, in this order:
 *
 * 1. Silent mode drops it (FT-TCP 3.6: a backup never speaks).
 * 2. A SYN-ACK records the server's ISN and options, and is held until the
 *    connection record is stable (DESIGN invariant 3).
 * 3. seq += seqDelta; SACK edges (client space) += ackDelta; TSval +=
 *    tsOffset (FT-TCP 3.3; RFC 7323 5.3: PAWS rejects only older TSvals, so a forward jump is safe).
 * 4. With ACK set: ack = min(kernel ack + ackDelta, stable-seq); the
 *    window grows so the right edge (ack + window << shift) reaches the
 *    highest right edge the kernel advertised, rounded down to a whole
 *    scaled unit, capped at 65535 units (DESIGN invariant 1, RFC 9293
 *    3.8.6: the window should not shrink). Never past the kernel's edge: a
 *    client segment that starts past it is dropped whole by Linux, its ack
 *    too (`tcp_sequence`, TcpExtBeyondWindow). Once the client's send edge
 *    is past it, even its pure ACKs are dropped; an echo server whose send
 *    waits for those ACKs stops reading, its edge stands still, and the
 *    connection never moves again. Rounding each clamped edge up (to keep
 *    it from stepping back by less than a unit) crept that far, a unit per
 *    clamped ack. Rounded down, the edge may step back by less than a unit
 *    when the clamped ack moves by a part of one: RFC 7323 2.4's case,
 *    which senders handle. The kernel's own segments at its ack come out
 *    unchanged.
 * 5. A segment with no data, no SYN/FIN/RST and no SACK blocks, sent at the
 *    send edge, that acknowledges nothing new and opens no window, is
 *    suppressed (FT-TCP 3.11). Keep-alives (seq below the send edge) and
 *    duplicate ACKs carrying SACK information still go out.
 *
 * 6. Adopted connections only: a bare ACK at or past the local send edge
 *    whose seq is behind the client's receive edge (the highest ack the
 *    client sent) leaves with seq raised to that edge. The rebuilt socket
 *    may not yet have re-sent bytes the old primary sent; until it has, its
 *    ACKs carry a seq the client has passed, and Linux drops such a segment
 *    whole, ack and window included (`tcp_sequence`: end_seq before
 *    rcv_wup), so the client would never hear that its bytes arrived. A bare
 *    ACK's seq only decides whether it is acceptable (RFC 9293 3.10.7.4).
 *    Keep-alives and window probes (seq below the send edge) keep theirs:
 *    they are meant to be unacceptable, to draw an ACK.
 *
 * Call `goLive` first for a `pending` connection (the wrap does).
 *
 * The state tracks the highest ack, right edge, send edge and TSval sent.
 */
export function rewriteOutgoing(c: Connection, pkt: TcpPacket): OutgoingDecision {
  if (c.mode === 'silent') return { verdict: 'drop', reason: 'silent' };
  const flags = pkt.flags;
  const isSyn = (flags & TcpFlag.SYN) !== 0;
  const { seqDelta, ackDelta, tsOffset } = c.deltas;
  let modified = false;

  // 2. SYN-ACK: learn the server side of the handshake.
  if (isSyn) {
    c.serverIsn = seqAdd(pkt.seq, seqDelta);
    c.serverSyn = synOptionsOf(pkt);
    if (!c.handshakeStable) return { verdict: 'hold', reason: 'handshake-unstable' };
  }

  // 3. Map the server's sequence space and timestamps into the client's view.
  if (seqDelta !== 0) {
    setSeq(pkt, seqAdd(pkt.seq, seqDelta));
    modified = true;
  }
  if (ackDelta !== 0) {
    // Outgoing SACK blocks name client bytes, as the ack does (RFC 2018 3).
    // They are not clamped: SACKed data stays in the client's retransmission
    // queue until cumulatively acked (RFC 2018 8), so no byte is lost.
    const blocks = pkt.options.sackBlocks;
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i] as { left: SeqNum; right: SeqNum };
      setSackBlock(pkt, i, { left: seqAdd(b.left, ackDelta), right: seqAdd(b.right, ackDelta) });
    }
    if (blocks.length > 0) modified = true;
  }
  if (pkt.options.tsVal !== undefined) {
    if (tsOffset !== 0) {
      setTsVal(pkt, u32Add(pkt.options.tsVal, tsOffset));
      modified = true;
    }
  }

  // 4. Clamp the ack to stable-seq and compensate with the window.
  let windowCapped = false;
  let newAck: SeqNum | undefined;
  let newRight: SeqNum | undefined;
  if (flags & TcpFlag.ACK) {
    const kernelAck = seqAdd(pkt.ack, ackDelta);
    // Recorded even if this segment is suppressed: it is a fact about the kernel.
    c.kernelAckHigh = c.kernelAckHigh === undefined ? kernelAck : seqMax(c.kernelAckHigh, kernelAck);
    newAck = seqMin(kernelAck, c.stableSeq);
    // Windows in SYN segments are never scaled (RFC 7323 2.2).
    const shift = isSyn ? 0 : outgoingWindowShift(c);
    const unit = 2 ** shift;
    // The window reaches the kernel's right edge, rounded down to a unit: a
    // unit further would let the client send what the kernel drops whole,
    // the ack on it too, and an echo server that stopped reading would then
    // never hear its bytes acknowledged. The highest edge the kernel gave,
    // so a window it closed keeps its right edge (Linux never retracts one).
    // When the clamped ack moves by less than a unit, the rounding may step
    // the edge back by less than a unit: RFC 7323 2.4's unavoidable case,
    // which senders handle.
    const kernelRight = seqAdd(kernelAck, pkt.window * unit);
    c.kernelRightHigh = c.kernelRightHigh === undefined ? kernelRight : seqMax(c.kernelRightHigh, kernelRight);
    let units = seqLt(c.kernelRightHigh, newAck) ? 0 : Math.floor(seqForward(c.kernelRightHigh, newAck) / unit);
    if (units > MAX_WINDOW_FIELD) {
      units = MAX_WINDOW_FIELD;
      windowCapped = true;
    }
    newRight = seqAdd(newAck, units * unit);
    if (newAck !== pkt.ack) {
      setAck(pkt, newAck);
      modified = true;
    }
    if (units !== pkt.window) {
      setWindow(pkt, units);
      modified = true;
    }
  }

  // 5. Suppress a pure ACK that tells the client nothing new.
  const segEnd = seqAdd(pkt.seq, segmentLength(pkt));
  const bare = pkt.payloadLength === 0 && (flags & (TcpFlag.SYN | TcpFlag.FIN | TcpFlag.RST)) === 0;
  if (
    bare &&
    pkt.options.sackBlocks.length === 0 &&
    c.sndNxt !== undefined &&
    pkt.seq === c.sndNxt &&
    newAck !== undefined &&
    c.lastAckSent !== undefined &&
    !seqGt(newAck, c.lastAckSent) &&
    newRight !== undefined &&
    c.lastRightEdge !== undefined &&
    !seqGt(newRight, c.lastRightEdge)
  ) {
    return { verdict: 'drop', reason: 'suppressed' };
  }

  // 6. Raise an adopted connection's bare ACK to the client's receive edge.
  let seqLifted = false;
  if (
    c.adopted &&
    bare &&
    c.sndNxt !== undefined &&
    !seqLt(pkt.seq, c.sndNxt) &&
    c.clientAckHigh !== undefined &&
    seqLt(pkt.seq, c.clientAckHigh)
  ) {
    setSeq(pkt, c.clientAckHigh);
    modified = true;
    seqLifted = true;
  }

  if (newAck !== undefined && newRight !== undefined) {
    c.lastAckSent = c.lastAckSent === undefined ? newAck : seqMax(c.lastAckSent, newAck);
    c.lastRightEdge = c.lastRightEdge === undefined ? newRight : seqMax(c.lastRightEdge, newRight);
  }
  // The send edge is the kernel's (segEnd was taken before step 6): it bounds
  // the acks an adopted connection's kernel accepts (see rewriteIncoming).
  if ((flags & TcpFlag.RST) === 0) c.sndNxt = c.sndNxt === undefined ? segEnd : seqMax(c.sndNxt, segEnd);
  if (pkt.options.tsVal !== undefined) c.lastTsValSent = pkt.options.tsVal;
  return { verdict: 'accept', modified, windowCapped, seqLifted };
}

/**
 * Rewrite an incoming segment of connection `c` into the kernel's view, the
 * inverse of {@link rewriteOutgoing} (FT-TCP 3.3): seq -= ackDelta; with ACK
 * set, ack -= seqDelta and TSecr -= tsOffset (TSecr is only meaningful
 * with ACK, RFC 7323 3.2); SACK edges (server space) -= seqDelta. A client
 * SYN records the client's ISN and options. Tracks the client's highest ack,
 * right edge and TSecr, and its last TSval (see {@link noteClientSegment}).
 *
 * A `pending` connection's segment is tracked and dropped: there is no
 * kernel socket for it yet, and the kernel would answer with a RST.
 *
 * An adopted connection's ack is clamped to the local send edge, the
 * highest sequence number its rebuilt socket has sent: the client may have
 * acknowledged bytes the old primary sent that the new socket has not sent
 * yet, and Linux drops a segment that acks unsent data whole (`tcp_ack`,
 * RFC 9293 3.10.7.4), data included. The window grows by what the clamp
 * took, rounded down to a whole scaled unit, so the kernel's right edge stays
 * inside the client's. SACK blocks that reach past the send edge are
 * removed, as Linux would ignore them anyway (`tcp_is_sackblock_valid`).
 */
export function rewriteIncoming(c: Connection, pkt: TcpPacket): IncomingDecision {
  const flags = pkt.flags;
  const { seqDelta, ackDelta, tsOffset } = c.deltas;
  let modified = false;

  noteClientSegment(c, pkt);
  if (c.mode === 'pending') return { verdict: 'drop', reason: 'pending' };

  let ackClamped = false;
  let sackBlocksDropped = 0;
  if (c.adopted && c.sndNxt !== undefined && (flags & TcpFlag.SYN) === 0) {
    const sendEdge = c.sndNxt;
    if (flags & TcpFlag.ACK && seqGt(pkt.ack, sendEdge)) {
      const shift = incomingWindowShift(c);
      const clientRight = seqAdd(pkt.ack, pkt.window * 2 ** shift);
      setAck(pkt, sendEdge);
      const units = Math.min(MAX_WINDOW_FIELD, Math.floor(seqForward(clientRight, sendEdge) / 2 ** shift));
      if (units !== pkt.window) setWindow(pkt, units);
      ackClamped = true;
      modified = true;
    }
    if (pkt.options.sackBlocks.length > 0) {
      sackBlocksDropped = retainSackBlocks(pkt, (b) => !seqGt(b.right, sendEdge));
      if (sackBlocksDropped > 0) modified = true;
    }
  }

  if (ackDelta !== 0) {
    setSeq(pkt, seqAdd(pkt.seq, -ackDelta));
    modified = true;
  }
  if (seqDelta !== 0) {
    if (flags & TcpFlag.ACK) {
      setAck(pkt, seqAdd(pkt.ack, -seqDelta));
      modified = true;
    }
    const blocks = pkt.options.sackBlocks;
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i] as { left: SeqNum; right: SeqNum };
      setSackBlock(pkt, i, { left: seqAdd(b.left, -seqDelta), right: seqAdd(b.right, -seqDelta) });
      modified = true;
    }
  }
  if (tsOffset !== 0 && flags & TcpFlag.ACK && pkt.options.tsEcr !== undefined) {
    setTsEcr(pkt, u32Add(pkt.options.tsEcr, -tsOffset));
    modified = true;
  }
  const log = pkt.payloadLength > 0 || (flags & (TcpFlag.SYN | TcpFlag.FIN | TcpFlag.RST)) !== 0;
  return { verdict: 'accept', modified, log, ackClamped, sackBlocksDropped };
}

/**
 * Track what an incoming segment tells about the client (client view, before
 * any rewrite): its ISN and options from its SYN; with ACK set, its highest
 * ack and right edge (for the recorder and crafted segments) and its highest
 * TSecr (RFC 7323 5.2 order; TSecr is only meaningful with ACK, 3.2); its
 * last TSval, which crafted segments echo.
 */
export function noteClientSegment(c: Connection, pkt: TcpPacket): void {
  const flags = pkt.flags;
  if (flags & TcpFlag.SYN && !(flags & TcpFlag.ACK)) {
    c.clientIsn = pkt.seq;
    c.clientSyn = synOptionsOf(pkt);
  }
  if (flags & TcpFlag.ACK) {
    // Windows in SYN segments are never scaled (RFC 7323 2.2).
    const shift = flags & TcpFlag.SYN ? 0 : incomingWindowShift(c);
    const right = seqAdd(pkt.ack, pkt.window * 2 ** shift);
    c.clientAckHigh = c.clientAckHigh === undefined ? pkt.ack : seqMax(c.clientAckHigh, pkt.ack);
    c.clientRightEdgeHigh = c.clientRightEdgeHigh === undefined ? right : seqMax(c.clientRightEdgeHigh, right);
    const tsEcr = pkt.options.tsEcr;
    if (tsEcr !== undefined) c.clientTsEcrHigh = c.clientTsEcrHigh === undefined ? tsEcr : u32Max(c.clientTsEcrHigh, tsEcr);
  }
  if (pkt.options.tsVal !== undefined) c.lastClientTsVal = pkt.options.tsVal;
}

/**
 * The sequence number just past an incoming segment (data, SYN and FIN),
 * in the client's view: call it before {@link rewriteIncoming} changes seq.
 * This is what stable-seq advances to once the buffer logs the segment.
 */
export function incomingEnd(pkt: TcpPacket): SeqNum {
  return seqAdd(pkt.seq, segmentLength(pkt));
}
