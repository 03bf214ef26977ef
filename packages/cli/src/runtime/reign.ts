/**
 * A node's reign as the primary: what it does when it loses the buffer
 * (DESIGN invariant 4, "never two speakers").
 *
 * Silence longer than the failure timeout means the buffer may have declared
 * this node failed and promoted a backup, which may be speaking now; or the
 * buffer process died and is coming back, and nobody was promoted. The node
 * cannot tell which, so it goes quiet: the server is frozen (SIGSTOP to its
 * process group, the children it started too) and the VIP given up, so
 * neither the server nor its kernel can say anything
 * (an established socket whose source address is gone cannot route). Then
 * it keeps asking the buffer for its epoch back:
 * - granted: nobody was promoted (a restarted buffer): the VIP returns with a
 *   gratuitous ARP, the server continues, and the client saw only a pause;
 * - refused with a stale epoch: a backup took over: the server is killed
 *   while the wrap's rules still drop what its kernel would send, and the
 *   reign ends (stepped down).
 */
import type { ChildProcess } from 'node:child_process';
import { sendGratuitousArp } from '@ftcp/ssw';
import { ErrorCode, isFtcpError, type Logger, type StableBufferClient } from '@ftcp/stable-buffer';
import { watchBuffer } from './buffer-watch.js';
import { addVip, dropVip, type Service } from './service.js';
import { signalServer } from './wrapped-server.js';

export interface ReignOptions {
  client: StableBufferClient;
  epoch: number;
  service: Service;
  /** Holds the VIP; without it only the server is frozen. */
  iface?: string;
  failureTimeoutMs: number;
  /** The server now (it may be restarted). */
  server: () => ChildProcess | null;
  logger: Logger;
  /**
   * Mutes the wrap while quiet (true) and unmutes it on resuming (false):
   * crafted ACKs and the kernel's own segments would otherwise still leave
   * (a raw socket needs no local address) while a backup may be speaking.
   */
  mute: (on: boolean) => void;
  /**
   * Called once, before the server is killed: from here nothing of the
   * service may leave (the wrap stops answering its queue, so its rules drop
   * everything: the RSTs the kernel sends for a killed server's sockets too).
   */
  silence: () => void;
  /** Called once, after the server was killed and the VIP given up. */
  onSteppedDown: (silentMs: number) => void;
}

export class Reign {
  private unwatch: () => void = () => {};
  private quietSince: number | null = null;
  private ended = false;
  private steppingDown = false;
  /** Times this node went quiet and came back. */
  pauses = 0;

  constructor(private readonly opts: ReignOptions) {}

  start(): void {
    this.watch();
    this.opts.client.once('fenced', () => void this.stepDown(this.quietSince === null ? 0 : Date.now() - this.quietSince));
  }

  /**
   * True once the reign is ending by a step-down: the server's exit that
   * follows is the step-down's doing, not a reason of its own to end.
   */
  get steppedDown(): boolean {
    return this.steppingDown;
  }

  /** True while the node is quiet, waiting to learn whether it still reigns. */
  get quiet(): boolean {
    return this.quietSince !== null;
  }

  stop(): void {
    this.ended = true;
    this.unwatch();
  }

  private watch(): void {
    this.unwatch = watchBuffer(this.opts.client, this.opts.failureTimeoutMs, (silent) => void this.goQuiet(silent));
  }

  /** The server's whole process group: a child it started must not speak while it is frozen, nor outlive it. */
  private signalServer(sig: NodeJS.Signals): void {
    signalServer(this.opts.server(), sig);
  }

  private async goQuiet(silentMs: number): Promise<void> {
    if (this.ended || this.quietSince !== null) return;
    this.quietSince = Date.now();
    this.opts.mute(true);
    this.signalServer('SIGSTOP');
    if (this.opts.iface) await dropVip(this.opts.iface, this.opts.service.vip).catch(() => {});
    this.opts.logger.log('warn', 'quiet', { silentMs: Math.round(silentMs), epoch: this.opts.epoch });
    while (!this.ended) {
      try {
        await this.opts.client.attachAsWriter(this.opts.epoch);
        break;
      } catch (err) {
        if (isFtcpError(err, ErrorCode.STALE_EPOCH)) {
          await this.stepDown(Date.now() - this.quietSince);
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (this.ended) return;
    if (this.opts.iface) {
      await addVip(this.opts.iface, this.opts.service.vip);
      sendGratuitousArp(this.opts.iface, this.opts.service.vip).catch((err: unknown) => this.opts.logger.log('warn', 'garp-failed', { error: String(err) }));
    }
    this.opts.mute(false);
    this.signalServer('SIGCONT');
    const pausedMs = Date.now() - this.quietSince;
    this.quietSince = null;
    this.pauses++;
    this.opts.logger.log('warn', 'resumed', { pausedMs, epoch: this.opts.epoch });
    this.watch();
  }

  private async stepDown(silentMs: number): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.steppingDown = true;
    this.unwatch();
    this.opts.logger.log('warn', 'stepping-down', { silentMs: Math.round(silentMs), epoch: this.opts.epoch });
    // Freeze first: from here the server produces nothing. Silence the wrap
    // before the kill: what the kernel sends for the dead server's sockets
    // (RST for unread data, RFC 9293 3.6) would otherwise pass through it.
    this.signalServer('SIGSTOP');
    this.opts.silence();
    this.signalServer('SIGKILL');
    if (this.opts.iface) await dropVip(this.opts.iface, this.opts.service.vip).catch(() => {});
    this.opts.onSteppedDown(silentMs);
  }
}
