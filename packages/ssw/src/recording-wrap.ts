/**
 * The south-side wrap of a primary as one object: an NFQUEUE queue, the
 * netfilter rules that feed it the service's packets, the decision core, the
 * recorder that logs to the stable buffer, and the raw socket for crafted
 * ACKs. Start it, and stop it on every exit path: rules are removed even on
 * process exit, and if the process dies the rules stay and drop the
 * service's packets (fail closed) until the next start removes them. With
 * the `hold` strategy the server's segments without SYN, FIN or RST still
 * leave then: harmless to the log, as its kernel never received a client byte
 * that was not stable.
 *
 * A promoted backup starts one with the dead primary's connections
 * (`adopt`) before it takes the VIP: see {@link Recorder.adopt}.
 */
import type { StableBufferClient } from '@ftcp/stable-buffer';
import type { AdoptedConnection } from './conntable.js';
import { NfQueue, RawInjector } from './nfqueue.js';
import { ServiceRules, type OutgoingQueueing } from './netfilter/rules.js';
import { Recorder, type AckStrategy, type ConnectionLag, type HandshakeRebuildRequest, type HandshakeRebuildResult, type RecorderCounters } from './recorder.js';
import { SouthSideWrap, type WrapCounters } from './wrap.js';

export interface RecordingWrapOptions {
  /** The service's virtual IPv4 address and port. */
  vip: string;
  port: number;
  /** NFQUEUE queue number; default 7400. */
  queue?: number;
  /** Firewall mark of our own injected packets, which the rules skip; default 0xf7c9. */
  mark?: number;
  /** The writer of the current epoch; a backup may start its wrap first and attach (promote) before the first packet. */
  buffer: StableBufferClient;
  ack?: AckStrategy;
  /**
   * Which outgoing packets go through the queue; default `control` (only
   * SYN, FIN and RST) with the `hold` strategy, else `all`. A backup's wrap
   * needs `all` whatever its strategy: it silences and adopts connections.
   */
  outgoing?: OutgoingQueueing;
  /**
   * Connections of a dead primary to take over (a promoted backup), adopted
   * before the rules are installed, so none of their segments can reach the
   * kernel before the wrap knows them. See {@link Recorder.adopt}.
   */
  adopt?: readonly AdoptedConnection[];
}

/** What `ftcp status` shows of a wrap. */
export interface RecordingWrapStatus {
  connections: number;
  /** Adopted connections still waiting for their rebuilt socket. */
  pending: number;
  /** Packets in the queue still waiting for their verdict. */
  packetsHeld: number;
  stable: { connId: number; stableOffset: number }[];
  /** Client bytes received and sent to the buffer beyond what it acknowledged as stable, over every connection. */
  stableLagBytes: number;
  /** The connections that lag most, most first, at most `STABLE_LAG_LISTED` (see {@link Recorder.stableLag}). */
  stableLag: ConnectionLag[];
  wrap: WrapCounters;
  recorder: RecorderCounters;
  queue: { enobufs: number; recvErrors: number };
}

export class RecordingWrap {
  private stopped = false;
  /** Mute rules iptables refused (see {@link mute}). */
  muteFailures = 0;
  /**
   * The process exits with the wrap still running. A clean exit (code 0)
   * leaves the service unwrapped; any other (an uncaught exception, a bug)
   * keeps the rules and mutes, as {@link abandon} does: the server may
   * outlive this process, and unwrapped its kernel would acknowledge client
   * bytes nobody logged (fail closed, never open). The next start removes
   * the rules as stale.
   */
  private readonly onExit = (code: number): void => {
    if (code === 0) {
      this.rules.removeSync();
      return;
    }
    try {
      this.rules.muteSync();
    } catch {
      // With no queue listener the rules drop the service's packets anyway; only hold's unqueued output needs the mute.
    }
  };

  private constructor(
    readonly wrap: SouthSideWrap,
    readonly recorder: Recorder,
    private readonly queue: NfQueue,
    private readonly injector: RawInjector,
    private readonly rules: ServiceRules,
  ) {
    process.once('exit', this.onExit);
  }

  /** Opens the queue, then installs the rules; undoes what it did if a step fails. */
  static async start(opts: RecordingWrapOptions): Promise<RecordingWrap> {
    const mark = opts.mark ?? 0xf7c9;
    const queueNum = opts.queue ?? 7400;
    const wrap = new SouthSideWrap({ mode: 'record' });
    const injector = new RawInjector(mark);
    let recorder: Recorder | undefined;
    let queue: NfQueue | undefined;
    try {
      const r = new Recorder({ wrap, buffer: opts.buffer, verdicts: { accept: (id, o) => queue!.accept(id, o), drop: (id) => queue!.drop(id), acceptThrough: (id) => queue!.acceptThrough(id) }, injector, ack: opts.ack ?? 'eager' });
      recorder = r;
      if (opts.adopt) r.adopt(opts.adopt);
      queue = NfQueue.open({ queue: queueNum, onPackets: (packets) => r.handle(packets) });
      const outgoing = opts.outgoing ?? (opts.ack === 'hold' ? 'control' : 'all');
      const rules = await ServiceRules.install({ vip: opts.vip, port: opts.port, queueNum, skipMark: mark, outgoing });
      return new RecordingWrap(wrap, r, queue, injector, rules);
    } catch (err) {
      recorder?.close();
      queue?.close();
      injector.close();
      throw err;
    }
  }

  /**
   * Take over more connections of a dead primary while running; do it before
   * their segments can arrive (before the VIP moves). See {@link Recorder.adopt}.
   */
  adopt(list: readonly AdoptedConnection[]): void {
    this.recorder.adopt(list);
  }

  /** Answers every adopted client at once: call it when the VIP has moved here. See {@link Recorder.keepPendingAlive}. */
  keepPendingAlive(): void {
    this.recorder.keepPendingAlive();
  }

  /**
   * Drop everything this host would send for the service, or stop doing so;
   * see {@link Recorder.mute}. What leaves without the queue is dropped by
   * a rule (see `ServiceRules.mute`), in place a few milliseconds later:
   * before a backup can speak, which takes a failure timeout and a
   * promotion, and the VIP goes too.
   */
  mute(on: boolean): void {
    if (this.stopped) return;
    this.recorder.mute(on);
    this.rules.mute(on).catch(() => this.muteFailures++);
  }


  /** Give up a pending connection whose socket could not be rebuilt; see {@link Recorder.releasePending}. */
  releasePending(bufferConnId: number): boolean {
    return this.recorder.releasePending(bufferConnId);
  }

  /** Rebuild a pending connection the replica never accepted; see {@link Recorder.rebuildByHandshake}. */
  rebuildByHandshake(bufferConnId: number, input: HandshakeRebuildRequest): Promise<HandshakeRebuildResult> {
    return this.recorder.rebuildByHandshake(bufferConnId, input);
  }

  status(): RecordingWrapStatus {
    const lag = this.recorder.stableLag();
    return { connections: this.recorder.connections, pending: this.recorder.pending, packetsHeld: this.recorder.packetsHeld, stable: this.recorder.stableOffsets(), stableLagBytes: lag.totalBytes, stableLag: lag.connections, wrap: this.wrap.counters, recorder: this.recorder.counters, queue: this.stopped ? { enobufs: 0, recvErrors: 0 } : this.queue.stats() };
  }

  /**
   * Stops wrapping but keeps the rules: with no queue listener they drop every
   * packet of the service (with `control`, a mute rule drops what the queue
   * would not see), so nothing the kernel still sends gets out (a primary
   * stepping down). The next start removes the rules as stale.
   */
  abandon(): void {
    if (this.stopped) return;
    this.stopped = true;
    process.removeListener('exit', this.onExit);
    try {
      this.rules.muteSync();
    } catch {
      this.muteFailures++;
    }
    this.recorder.close();
    this.queue.close();
    this.injector.close();
  }

  /**
   * Leaves the service unwrapped: removes the rules, then closes the queue.
   * For a clean shutdown only. A primary that steps down must not do this
   * while it still owns the VIP (its kernel would answer the client once the
   * backup speaks): give up the VIP first, or keep the rules (fail closed).
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    process.removeListener('exit', this.onExit);
    try {
      await this.rules.remove();
    } finally {
      this.recorder.close();
      this.queue.close();
      this.injector.close();
    }
  }
}
