/**
 * Rebuilding a connection the dead primary's server never accepted, by the
 * paper's spoofed handshake (FT-TCP 3.8). TCP_REPAIR rebuilds a socket the
 * replica holds; a connection whose handshake completed in the old primary's
 * kernel but whose `accept` was never logged has no socket in the replica,
 * and a repaired socket cannot be put in a listener's accept queue. So the
 * new primary's kernel is shown the client's SYN (its ISN and options, from
 * the connection record), answers with a SYN-ACK of its own choosing (which
 * the wrap drops), and is shown the client's ACK and every stable client
 * byte. The connection then waits in the accept queue like any other, and
 * the live server accepts it; the wrap maps the kernel's ISN and TSvals to
 * the ones the client knows (`ConnDeltas`).
 *
 * No I/O here: it crafts bytes and sets the connection's deltas; the
 * recorder injects them.
 */
import type { ConnKey, Connection } from './conntable.js';
import { incomingWindowShift, outgoingWindowShift, timestampsNegotiated } from './conntable.js';
import { writeU16, writeU32 } from './wire/bytes.js';
import { tcpChecksum } from './wire/checksum.js';
import { writeCraftedIpv4Header } from './wire/ipv4.js';
import { offsetToSeq, seqAdd, seqDiff, seqDelta, seqForward, seqGt, u32Add } from './wire/seq.js';
import type { SeqNum } from './wire/seq.js';
import { TCP, TcpFlag, TcpOptionKind, type TcpPacket } from './wire/tcp.js';

/** Largest payload of one injected segment: well under the loopback MTU. */
export const HANDSHAKE_REBUILD_CHUNK = 16384;

/** What a handshake rebuild needs besides the adopted connection. */
export interface HandshakeRebuildInput {
  /** Every stable client byte, from stream offset 0. */
  readonly instream: Uint8Array;
  /** The client's FIN is stable, right after `instream`. */
  readonly fin: boolean;
  /**
   * The TSval the client sees first from the new kernel (client view), at or
   * past every TSval the old primary sent it (its PAWS check drops older ones).
   */
  readonly firstTsVal: number;
  /** The client's last logged window, in bytes. */
  readonly clientWindow: number;
}

/** One segment as the client would send it (client view: its own seq space, our kernel's ack space). */
export interface ClientSegment {
  readonly seq: SeqNum;
  readonly ack?: SeqNum;
  readonly flags: number;
  /** The raw window field. */
  readonly window: number;
  /** SYN only: the options the client's SYN offered. */
  readonly syn?: { readonly mss: number; readonly windowScale: number | undefined; readonly sackPermitted: boolean };
  readonly ts?: { readonly val: number; readonly ecr: number };
  readonly payload?: Uint8Array;
}

/**
 * An IPv4 packet from the client of `k` to the server, with a complete
 * checksum. Options in the layouts Linux itself sends: SYN `MSS, SACK-perm,
 * TS, NOP, WS` (or `MSS, NOP, NOP, SACK-perm`/`NOP, WS` without timestamps),
 * others `NOP, NOP, TS`.
 */
export function craftClientSegment(k: ConnKey, s: ClientSegment): Buffer {
  const opts: number[] = [];
  const u32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  if (s.syn) {
    opts.push(TcpOptionKind.MSS, 4, (s.syn.mss >>> 8) & 0xff, s.syn.mss & 0xff);
    if (s.ts) {
      if (s.syn.sackPermitted) opts.push(TcpOptionKind.SACK_PERMITTED, 2);
      else opts.push(TcpOptionKind.NOP, TcpOptionKind.NOP);
      opts.push(TcpOptionKind.TIMESTAMPS, 10, ...u32(s.ts.val), ...u32(s.ts.ecr));
    } else if (s.syn.sackPermitted) {
      opts.push(TcpOptionKind.NOP, TcpOptionKind.NOP, TcpOptionKind.SACK_PERMITTED, 2);
    }
    if (s.syn.windowScale !== undefined) opts.push(TcpOptionKind.NOP, TcpOptionKind.WINDOW_SCALE, 3, s.syn.windowScale);
  } else if (s.ts) {
    opts.push(TcpOptionKind.NOP, TcpOptionKind.NOP, TcpOptionKind.TIMESTAMPS, 10, ...u32(s.ts.val), ...u32(s.ts.ecr));
  }
  while (opts.length % 4 !== 0) opts.push(TcpOptionKind.NOP);
  const payload = s.payload ?? new Uint8Array(0);
  const tcpLen = TCP.MIN_HEADER_LENGTH + opts.length + payload.length;
  const total = 20 + tcpLen;
  const b = Buffer.alloc(total);
  writeCraftedIpv4Header(b, total, k.clientAddr, k.serverAddr);
  const t = 20;
  writeU16(b, t + TCP.SRC_PORT, k.clientPort);
  writeU16(b, t + TCP.DST_PORT, k.serverPort);
  writeU32(b, t + TCP.SEQ, s.seq);
  writeU32(b, t + TCP.ACK, s.ack ?? 0);
  b[t + TCP.DATA_OFFSET] = ((TCP.MIN_HEADER_LENGTH + opts.length) / 4) << 4;
  b[t + TCP.FLAGS] = s.flags;
  writeU16(b, t + TCP.WINDOW, Math.min(0xffff, s.window));
  Buffer.from(opts).copy(b, t + TCP.MIN_HEADER_LENGTH);
  Buffer.from(payload.buffer, payload.byteOffset, payload.length).copy(b, t + TCP.MIN_HEADER_LENGTH + opts.length);
  writeU16(b, t + TCP.CHECKSUM, tcpChecksum(b, t, tcpLen, k.clientAddr, k.serverAddr));
  return b;
}

/** What the wrap does with one segment the kernel sent during a handshake rebuild. */
export type HandshakeStep =
  | {
      readonly ok: true;
      /** Segments to inject now, in order. */
      readonly packets: readonly Buffer[];
      /** This segment was the SYN-ACK: the kernel has the connection (the deltas are set). */
      readonly established: boolean;
      /** Every stable byte (and the FIN) is in: the wrap stops taking the kernel's segments. */
      readonly done: boolean;
    }
  | { readonly ok: false; readonly reason: string };

/**
 * One handshake rebuild, as a state machine over the kernel's segments
 * (kernel view), which the wrap takes instead of sending them (the client
 * must not see a SYN-ACK, nor acks of bytes it was acknowledged long ago).
 *
 * The SYN-ACK gives the deltas from the kernel's view to the client's, and
 * is answered by the handshake's ACK. Then the stable client bytes go in,
 * never past the kernel's advertised right edge: a new socket offers only
 * 64 KiB at first (the SYN-ACK's window is unscaled) and grows its window as
 * data arrives, and bytes past the edge it drops, while the client, whose
 * bytes the old primary acknowledged, never sends them again. Each of the
 * kernel's ACKs moves the edge on. The FIN follows the data if it was
 * logged; last comes a bare ACK one byte below the kernel's receive edge,
 * which the kernel answers at once (RFC 9293 3.10.7.4): the wrap lets that
 * answer through, and it makes the connection live with the kernel's real
 * right edge known.
 *
 * Refused when the kernel chose another window scale than the old primary
 * (the client reads windows in the old one), or left out timestamps the
 * client expects.
 */
export class HandshakeRebuild {
  private readonly timestamps: boolean;
  private readonly scaled: boolean;
  /** Bytes of the instream given to the kernel so far. */
  private sent = 0;
  private finSent = false;
  private probed = false;
  private kernelIsn: SeqNum | undefined;
  private kernelTsVal = 0;
  /** The kernel's advertised right edge, in the client's sequence space. */
  private right: SeqNum | undefined;
  private window = 0;

  constructor(
    private readonly c: Connection,
    private readonly input: HandshakeRebuildInput,
    /** The TSval of the spoofed client segments: at or past what the kernel last saw from this client. */
    private readonly clientTsVal: number,
  ) {
    this.timestamps = timestampsNegotiated(c);
    // The record keeps 0 for "not negotiated": a shift of 0 on both sides is none.
    this.scaled = (c.clientSyn!.windowScale ?? 0) > 0 || (c.serverSyn!.windowScale ?? 0) > 0;
  }

  /**
   * The client's SYN as the connection record has it: its ISN, the MSS,
   * SACK and timestamps as negotiated, and a window scale only when one was
   * (the record keeps 0 for "none", and offering one would make the kernel
   * scale windows the client reads unscaled).
   */
  syn(): Buffer {
    const cs = this.c.clientSyn!;
    return craftClientSegment(this.c.key, {
      seq: this.c.clientIsn!,
      flags: TcpFlag.SYN,
      window: Math.min(0xffff, this.input.clientWindow),
      syn: { mss: cs.mss ?? 536, windowScale: this.scaled ? (cs.windowScale ?? 0) : undefined, sackPermitted: cs.sackPermitted },
      ...(this.timestamps ? { ts: { val: this.clientTsVal, ecr: 0 } } : {}),
    });
  }

  /** The kernel sent `pkt` (kernel view) on this connection. */
  onKernelSegment(pkt: TcpPacket): HandshakeStep {
    const isn = this.c.clientIsn!;
    if (pkt.flags & TcpFlag.SYN) {
      if (this.kernelIsn !== undefined) return { ok: true, packets: [], established: false, done: false }; // a retransmission
      const ss = this.c.serverSyn!;
      const kernelScale = pkt.options.windowScale;
      const wantScale = this.scaled ? (ss.windowScale ?? 0) : undefined;
      if (kernelScale !== wantScale) {
        return { ok: false, reason: `the kernel chose window scale ${kernelScale ?? 'none'}, the client knows ${wantScale ?? 'none'}` };
      }
      if (this.timestamps && pkt.options.tsVal === undefined) return { ok: false, reason: 'the kernel did not answer with timestamps' };
      this.kernelIsn = pkt.seq;
      this.kernelTsVal = pkt.options.tsVal ?? 0;
      this.c.deltas = {
        seqDelta: seqDiff(this.c.serverIsn!, pkt.seq),
        ackDelta: seqDelta(0),
        tsOffset: this.timestamps ? u32Add(this.input.firstTsVal, -this.kernelTsVal) : 0,
      };
      this.window = Math.min(0xffff, Math.floor(this.input.clientWindow / 2 ** incomingWindowShift(this.c)));
      // Windows in SYN segments are never scaled (RFC 7323 2.2).
      this.right = seqAdd(offsetToSeq(0, isn), pkt.window);
      return { ok: true, packets: [this.segment(offsetToSeq(0, isn), TcpFlag.ACK), ...this.more()], established: true, done: this.finished() };
    }
    if (this.kernelIsn === undefined) return { ok: false, reason: 'the kernel sent a segment before its SYN-ACK' };
    if (pkt.flags & TcpFlag.RST) return { ok: false, reason: 'the kernel reset the connection' };
    if (pkt.flags & TcpFlag.ACK) {
      const edge = seqAdd(pkt.ack, pkt.window * 2 ** outgoingWindowShift(this.c));
      if (this.right === undefined || seqGt(edge, this.right)) this.right = edge;
    }
    return { ok: true, packets: this.more(), established: false, done: this.finished() };
  }

  private finished(): boolean {
    return this.sent === this.input.instream.length && this.finSent === this.input.fin;
  }

  /** The bytes (then the FIN, then the probe) that fit in the kernel's window now. */
  private more(): Buffer[] {
    const isn = this.c.clientIsn!;
    const out: Buffer[] = [];
    const data = this.input.instream;
    while (this.sent < data.length) {
      const at = offsetToSeq(this.sent, isn);
      const room = seqGt(this.right!, at) ? seqForward(this.right!, at) : 0;
      const n = Math.min(room, HANDSHAKE_REBUILD_CHUNK, data.length - this.sent);
      if (n <= 0) return out;
      out.push(this.segment(at, TcpFlag.ACK | TcpFlag.PSH, data.subarray(this.sent, this.sent + n)));
      this.sent += n;
    }
    if (this.input.fin && !this.finSent) {
      out.push(this.segment(offsetToSeq(this.sent, isn), TcpFlag.FIN | TcpFlag.ACK));
      this.finSent = true;
    }
    if (this.finished() && !this.probed) {
      out.push(this.segment(seqAdd(offsetToSeq(this.sent + (this.finSent ? 1 : 0), isn), -1), TcpFlag.ACK));
      this.probed = true;
    }
    return out;
  }

  private segment(seq: SeqNum, flags: number, payload?: Uint8Array): Buffer {
    const ts = this.timestamps ? { val: this.clientTsVal, ecr: this.kernelTsVal } : undefined;
    return craftClientSegment(this.c.key, { seq, ack: seqAdd(this.kernelIsn!, 1), flags, window: this.window, ...(ts ? { ts } : {}), ...(payload ? { payload } : {}) });
  }
}
