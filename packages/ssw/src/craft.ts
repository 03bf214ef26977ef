/**
 * Crafting segments the wrap sends on its own, in the client's view, for
 * injection past the rewriter (raw socket with the wrap's mark): the fresh
 * ACK of the `eager` ack strategy when the buffer acknowledges new bytes
 * (FT-TCP 3.11), an ACK with SACK blocks, and the zero-window keep-alive
 * ACK a recovering backup sends so clients do not time out (DESIGN,
 * "Failover, in order" step 6). Pure: returns bytes.
 */
import assert from 'node:assert';
import type { Connection } from './conntable.js';
import { outgoingWindowShift, sackNegotiated, timestampsNegotiated } from './conntable.js';
import { MAX_WINDOW_FIELD } from './rewrite.js';
import { writeU16, writeU32 } from './wire/bytes.js';
import { tcpChecksum } from './wire/checksum.js';
import { writeCraftedIpv4Header } from './wire/ipv4.js';
import { seqAdd, seqForward, seqGt, seqLt, seqMax, seqMin, u32Max } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import type { SackBlock } from './wire/tcp.js';
import { TCP, TcpFlag, TcpOptionKind } from './wire/tcp.js';

/** What to put in a crafted ACK. */
export interface CraftAckOptions {
  /** SACK blocks (client space, client view), at most 3 with timestamps or 4 without (RFC 2018 3). */
  sackBlocks?: readonly SackBlock[];
  /** Advertise a zero window (a keep-alive that lets no new data in). */
  zeroWindow?: boolean;
  /** IPv4 identification field; default 0 (DF set, RFC 6864 4.1). */
  ipId?: number;
}

/**
 * Build an ACK from the server to the client of connection `c`: seq at the
 * send edge ({@link craftedSeqNumber}), ack at stable-seq (never beyond,
 * DESIGN invariant 1), window reaching the highest right edge already
 * advertised (or zero), timestamps when negotiated ({@link craftedTsVal};
 * TSecr echoes the client's last TSval, or 0 before one was seen, which
 * yields no RTT sample, RFC 7323 4.1). Updates the connection's last ack and
 * right edge, as the rewriter does for the segments it sends.
 *
 * The connection must have completed its handshake through the wrap, or
 * been adopted (send edge and server ISN known); otherwise this is a caller
 * bug (assert).
 */
export function craftAck(c: Connection, opts: CraftAckOptions = {}): Buffer {
  assert(c.sndNxt !== undefined, 'craftAck before any segment was sent');
  const tsVal = craftedTsVal(c);
  const ts = timestampsNegotiated(c) && tsVal !== undefined;
  const sack = sackNegotiated(c) ? (opts.sackBlocks ?? []) : [];
  assert(sack.length <= (ts ? 3 : 4), 'too many SACK blocks for the option space');
  const optLen = (ts ? 12 : 0) + (sack.length > 0 ? 4 + 8 * sack.length : 0);
  const tcpLen = TCP.MIN_HEADER_LENGTH + optLen;
  const total = 20 + tcpLen;
  const b = Buffer.alloc(total);
  const k = c.key;

  writeCraftedIpv4Header(b, total, k.serverAddr, k.clientAddr, opts.ipId ?? 0);

  const ack = craftedAckNumber(c);
  const shift = outgoingWindowShift(c);
  let units = 0;
  // Up to the kernel's right edge and never past it, as rewriteOutgoing does.
  if (!opts.zeroWindow && c.kernelRightHigh !== undefined && seqGt(c.kernelRightHigh, ack)) {
    units = Math.min(MAX_WINDOW_FIELD, Math.floor(seqForward(c.kernelRightHigh, ack) / 2 ** shift));
  }
  const t = 20;
  writeU16(b, t + TCP.SRC_PORT, k.serverPort);
  writeU16(b, t + TCP.DST_PORT, k.clientPort);
  writeU32(b, t + TCP.SEQ, craftedSeqNumber(c));
  writeU32(b, t + TCP.ACK, ack);
  b[t + TCP.DATA_OFFSET] = (tcpLen / 4) << 4;
  b[t + TCP.FLAGS] = TcpFlag.ACK;
  writeU16(b, t + TCP.WINDOW, units);
  let o = t + TCP.MIN_HEADER_LENGTH;
  if (ts) {
    // NOP NOP TS: the layout RFC 7323 appendix A recommends.
    b[o++] = TcpOptionKind.NOP;
    b[o++] = TcpOptionKind.NOP;
    b[o++] = TcpOptionKind.TIMESTAMPS;
    b[o++] = 10;
    writeU32(b, o, tsVal ?? 0);
    writeU32(b, o + 4, c.lastClientTsVal ?? 0);
    o += 8;
  }
  if (sack.length > 0) {
    b[o++] = TcpOptionKind.NOP;
    b[o++] = TcpOptionKind.NOP;
    b[o++] = TcpOptionKind.SACK;
    b[o++] = 2 + 8 * sack.length;
    for (const s of sack) {
      writeU32(b, o, s.left);
      writeU32(b, o + 4, s.right);
      o += 8;
    }
  }
  writeU16(b, t + TCP.CHECKSUM, tcpChecksum(b, t, tcpLen, k.serverAddr, k.clientAddr));

  c.lastAckSent = ack;
  const right = seqAdd(ack, units * 2 ** shift);
  if (c.lastRightEdge === undefined || seqLt(c.lastRightEdge, right)) c.lastRightEdge = right;
  return b;
}

/**
 * The seq of a crafted segment: the local send edge, or for an adopted
 * connection whose client has acknowledged past it (bytes the old primary
 * sent that the rebuilt socket has not re-sent yet) the client's receive
 * edge. Linux drops a segment whose seq is before its receive edge whole,
 * ack and window included (`tcp_sequence`), so a crafted ACK must not lag.
 */
export function craftedSeqNumber(c: Connection): SeqNum {
  assert(c.sndNxt !== undefined, 'no send edge yet');
  if (c.adopted && c.clientAckHigh !== undefined) return seqMax(c.sndNxt, c.clientAckHigh);
  return c.sndNxt;
}

/**
 * The TSval of a crafted segment: the newer of the last TSval sent and the
 * highest TSecr the client echoed (RFC 7323 5.2 order). PAWS (RFC 7323 5.3)
 * drops a segment with a TSval older than the newest the client has seen;
 * repeating one it has seen passes. A pending connection has sent nothing
 * yet and uses the client's TSecr alone. Never a value the client has not
 * seen: the client would take it as its new floor, and the rebuilt socket's
 * own TSvals (set from the logged TSecr) could then fall behind it and be
 * dropped. Undefined when neither is known.
 */
export function craftedTsVal(c: Connection): number | undefined {
  if (c.lastTsValSent === undefined) return c.clientTsEcrHigh;
  if (c.clientTsEcrHigh === undefined) return c.lastTsValSent;
  return u32Max(c.lastTsValSent, c.clientTsEcrHigh);
}

/**
 * True when an `eager` ACK would tell the client something: the crafted ack
 * is past the last ack sent (FT-TCP 3.11: "unless that packet has already
 * been acknowledged to the client").
 */
export function ackIsDue(c: Connection): boolean {
  if (c.sndNxt === undefined || c.kernelAckHigh === undefined) return false;
  return c.lastAckSent === undefined || seqGt(craftedAckNumber(c), c.lastAckSent);
}

/**
 * The ack a crafted segment carries (client view): stable-seq, but never
 * past what the local kernel has acknowledged (bytes the kernel dropped
 * must still be resent by the client, or they would be lost to the
 * primary) and never behind an ack already sent.
 */
export function craftedAckNumber(c: Connection): SeqNum {
  const limit = c.kernelAckHigh === undefined ? c.stableSeq : seqMin(c.stableSeq, c.kernelAckHigh);
  return c.lastAckSent === undefined ? limit : seqMax(c.lastAckSent, limit);
}
