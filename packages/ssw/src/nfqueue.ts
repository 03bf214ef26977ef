/**
 * NFQUEUE adapter: receive packets a netfilter rule queued, give each a
 * verdict (accept, optionally with rewritten bytes and a mark, or drop).
 * The native part only moves bytes; what to decide lives in
 * {@link SouthSideWrap} and its caller.
 */
import { FtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from './errors.js';
import { loadNative, nativeError } from './native.js';
import type { NativeBatch, NativeQueue, NativeRawSocket } from './native.js';

/** One queued packet. */
export interface QueuedPacket {
  /** Queue-assigned id; pass it to the verdict. */
  readonly id: number;
  /** Netfilter hook number (NF_INET_LOCAL_IN = 1, LOCAL_OUT = 3, ...). */
  readonly hook: number;
  /** The packet's firewall mark. */
  readonly mark: number;
  /** The IPv4 packet, up to the copy range. Rewrite it in place and pass it back. */
  readonly payload: Buffer;
  /**
   * The TCP checksum holds only the pseudo-header sum (`NFQA_SKB_CSUMNOTREADY`):
   * parse with `checksumPartial` so rewriting leaves it consistent.
   */
  readonly checksumPartial: boolean;
  /** The packet is a GSO super-packet larger than the device MTU. */
  readonly gso: boolean;
  /**
   * Always true: the kernel validated or built every queued packet, so a
   * total length beyond `payload` means the copy range cut it. Lets a
   * QueuedPacket serve directly as the wrap's `PacketMeta`.
   */
  readonly truncatedOk: true;
}

/** How to open a queue. */
export interface NfQueueOptions {
  /** Queue number the `NFQUEUE --queue-num` rule names, 0..65535. */
  queue: number;
  /** Bytes of each packet copied to user space; default 0xffff (whole GSO packets). */
  copyRange?: number;
  /** Packets the kernel holds waiting for verdicts; default 4096. */
  maxLen?: number;
  /**
   * Take GSO packets whole (`NFQA_CFG_F_GSO`); default true. Much faster
   * (issue 3 measurements) and handled by the wire code (partial checksums).
   */
  gso?: boolean;
  /**
   * Let packets pass unqueued when the queue is full (`NFQA_CFG_F_FAIL_OPEN`);
   * default false, and it must stay false for a wrap: fail closed.
   */
  failOpen?: boolean;
  /** Called with each batch of packets, in arrival order. Must not throw. */
  onPackets: (packets: QueuedPacket[]) => void;
}

/** Verdict options: rewritten bytes and/or a new mark. */
export interface AcceptOptions {
  /** The packet bytes to send instead of the original (same or other length). */
  payload?: Uint8Array;
  /** A firewall mark to set on the packet. */
  mark?: number;
}

/** An open NFQUEUE queue. Close it on every exit path. */
export class NfQueue {
  private q: NativeQueue | undefined;
  private readonly nfAccept: number;
  private readonly nfDrop: number;

  private constructor(q: NativeQueue, nfAccept: number, nfDrop: number) {
    this.q = q;
    this.nfAccept = nfAccept;
    this.nfDrop = nfDrop;
  }

  /**
   * Bind queue `opts.queue` in the current network namespace. Needs
   * CAP_NET_ADMIN.
   * @throws FtcpError `FTCP_ERR_NFQUEUE` (with `errno`) when the kernel refuses,
   *   `FTCP_ERR_BAD_CONFIG` for out-of-range options,
   *   `FTCP_ERR_NATIVE_UNAVAILABLE` when the addon is not built.
   */
  static open(opts: NfQueueOptions): NfQueue {
    const copyRange = opts.copyRange ?? 0xffff;
    const maxLen = opts.maxLen ?? 4096;
    checkInt('queue', opts.queue, 0, 0xffff);
    checkInt('copyRange', copyRange, 0, 0xffff);
    checkInt('maxLen', maxLen, 1, 0xffffffff);
    const native = loadNative();
    const csumNotReady = native.SKB_CSUMNOTREADY;
    const gsoBit = native.SKB_GSO;
    const onBatch = (batch: NativeBatch): void => {
      const packets: QueuedPacket[] = [];
      for (let i = 0; i + 6 < batch.length; i += 7) {
        const skbInfo = batch[i + 3] as number;
        packets.push({
          id: batch[i] as number,
          hook: batch[i + 1] as number,
          mark: batch[i + 2] as number,
          // A view of the receive slab: the packet's own bytes, not shared with any other packet.
          payload: Buffer.from(batch[i + 4] as ArrayBuffer, batch[i + 5] as number, batch[i + 6] as number),
          checksumPartial: (skbInfo & csumNotReady) !== 0,
          gso: (skbInfo & gsoBit) !== 0,
          truncatedOk: true,
        });
      }
      opts.onPackets(packets);
    };
    let q: NativeQueue;
    try {
      q = new native.Queue(opts.queue, copyRange, maxLen, opts.gso ?? true, opts.failOpen ?? false, onBatch);
    } catch (err) {
      throw nativeError(SswErrorCode.NFQUEUE, `open queue ${opts.queue}`, err);
    }
    return new NfQueue(q, native.NF_ACCEPT, native.NF_DROP);
  }

  /** True once {@link close} has run. */
  get closed(): boolean {
    return this.q === undefined;
  }

  /** Let the packet go on, rewritten and re-marked if the options say so. */
  accept(id: number, opts: AcceptOptions = {}): void {
    this.verdict(id, this.nfAccept, opts);
  }

  /**
   * Accept, unchanged, every packet still waiting with an id up to `id`
   * (ids grow by one per queued packet), in one message
   * (`nfq_set_verdict_batch`). Give packets that need new bytes or another
   * verdict their own verdict first.
   */
  acceptThrough(id: number, opts: { mark?: number } = {}): void {
    const q = this.open();
    try {
      q.verdictBatch(id, this.nfAccept, opts.mark);
    } catch (err) {
      throw nativeError(SswErrorCode.NFQUEUE, `batch verdict through packet ${id}`, err);
    }
  }

  /** Drop the packet. */
  drop(id: number): void {
    this.verdict(id, this.nfDrop, {});
  }

  /**
   * Counters of this queue: `enobufs`, socket overruns (the kernel dropped
   * queued packets); `recvErrors`, other receive errors; `lost`, packets
   * received but not handed to JavaScript (allocation failure; each was dropped).
   */
  stats(): { enobufs: number; recvErrors: number; lost: number } {
    return this.open().stats();
  }

  /** Keep the event loop alive while the queue is open (the default). */
  ref(): void {
    this.open().ref();
  }

  /** Let the process exit even though the queue is open. */
  unref(): void {
    this.open().unref();
  }

  /**
   * Unbind the queue. Packets still waiting for a verdict are dropped by
   * the kernel (fail closed). Safe to call twice.
   */
  close(): void {
    const q = this.q;
    this.q = undefined;
    q?.close();
  }

  private verdict(id: number, verdict: number, opts: AcceptOptions): void {
    const q = this.open();
    try {
      q.verdict(id, verdict, opts.mark, opts.payload);
    } catch (err) {
      throw nativeError(SswErrorCode.NFQUEUE, `verdict for packet ${id}`, err);
    }
  }

  private open(): NativeQueue {
    if (this.q === undefined) throw new FtcpError(SswErrorCode.CLOSED, 'the queue is closed');
    return this.q;
  }
}

/**
 * A raw IPv4 socket that sends whole, caller-built packets with a firewall
 * mark, so the wrap's own NFQUEUE rules (which skip that mark) let them
 * through: crafted ACKs, keep-alives, segments of a rebuilt connection.
 */
export class RawInjector {
  private s: NativeRawSocket | undefined;

  /**
   * Open the socket. Needs CAP_NET_RAW (and CAP_NET_ADMIN for the mark).
   * @throws FtcpError `FTCP_ERR_RAW_SOCKET` with `errno` when refused.
   */
  constructor(readonly mark: number) {
    checkInt('mark', mark, 0, 0xffffffff);
    const native = loadNative();
    try {
      this.s = new native.RawSocket(mark);
    } catch (err) {
      throw nativeError(SswErrorCode.RAW_SOCKET, 'open raw socket', err);
    }
  }

  /**
   * Send one complete IPv4 packet (header checksum included; the kernel
   * fills a zero IP id and checksum). Returns the bytes sent.
   * @throws FtcpError `FTCP_ERR_RAW_SOCKET` when the kernel refuses it.
   */
  send(packet: Uint8Array): number {
    if (this.s === undefined) throw new FtcpError(SswErrorCode.CLOSED, 'the raw socket is closed');
    try {
      return this.s.send(packet);
    } catch (err) {
      throw nativeError(SswErrorCode.RAW_SOCKET, 'send', err);
    }
  }

  /** Close the socket. Safe to call twice. */
  close(): void {
    this.s?.close();
    this.s = undefined;
  }
}

function checkInt(name: string, v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new FtcpError(SswErrorCode.BAD_CONFIG, `${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  }
}
