/**
 * A primary node (FT-TCP 2.3): one buffer client, one ordered channel, shared
 * by the south-side wrap (client segments) and the north-side agent (call
 * records); the unmodified server runs under the NSW shim in record mode.
 *
 * When it hears nothing from the buffer for longer than the failure timeout
 * it goes quiet, and it steps down once it learns a backup took over (see
 * {@link Reign}): the server is killed while the wrap's rules still drop
 * everything its kernel would send (fail closed, so no FIN or RST reaches a
 * client the backup serves), and the VIP is given up.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { NswAgent } from '@ftcp/nsw';
import { RecordingWrap, type AckStrategy } from '@ftcp/ssw';
import { CallWriter, StableBufferClient, type Logger } from '@ftcp/stable-buffer';
import { logWriteRefusals, recordingReport } from './recording-report.js';
import { Reign } from './reign.js';
import { capOffloadSizes, dropVip, type Service } from './service.js';
import { makeStateDir } from './state-dir.js';
import { spawnWrappedServer, stopServer } from './wrapped-server.js';

export interface PrimaryOptions {
  service: Service;
  buffer: string;
  command: string[];
  iface?: string;
  ack?: AckStrategy;
  node?: string;
  queue?: number;
  /** Silence from the buffer (ms) after which the primary steps down; match the buffer's. */
  failureTimeoutMs?: number;
  logger: Logger;
}

/** How a primary ended. */
export type PrimaryExit = { reason: 'server-exited'; code: number | null } | { reason: 'stopped' } | { reason: 'stepped-down'; silentMs: number };

export class Primary {
  private server: ChildProcess | null = null;
  private wrap: RecordingWrap | null = null;
  private agent: NswAgent | null = null;
  private readonly client: StableBufferClient;
  private readonly stateDir = makeStateDir('primary');
  private timers: NodeJS.Timeout[] = [];
  private reign: Reign | null = null;
  private finish!: (e: PrimaryExit) => void;
  /** Settles once, with why the primary ended. */
  readonly done: Promise<PrimaryExit>;
  private ending = false;
  epoch = 0;

  constructor(private readonly opts: PrimaryOptions) {
    this.client = StableBufferClient.connect({ endpoint: opts.buffer, node: opts.node ?? hostname(), requestTimeoutMs: 5000 });
    logWriteRefusals(this.client, opts.logger);
    this.done = new Promise((r) => (this.finish = r));
  }

  /** Attaches to the buffer, starts the agent, the wrap and the server. Undoes it all if a step fails. */
  async start(): Promise<void> {
    const { service, logger } = this.opts;
    try {
      // Probes answered from a thread of its own: a busy event loop here is not a dead primary.
      this.client.startHeartbeat();
      this.epoch = (await this.client.attachAsWriter()).epoch;
      const socketPath = join(this.stateDir, 'nsw.sock');
      this.agent = new NswAgent({ socketPath, mode: 'record', sink: new CallWriter(this.client), logger });
      await this.agent.listen();
      if (this.opts.iface) await capOffloadSizes(this.opts.iface);
      this.wrap = await RecordingWrap.start({ vip: service.vip, port: service.port, buffer: this.client, ack: this.opts.ack ?? 'eager', ...(this.opts.queue !== undefined ? { queue: this.opts.queue } : {}) });
      this.server = spawnWrappedServer(this.opts.command, { mode: 'record', socketPath, port: service.port });
      this.server.once('error', (err) => {
        logger.log('error', 'server-failed-to-start', { command: this.opts.command.join(' '), error: String(err) });
        void this.end({ reason: 'server-exited', code: null });
      });
      this.server.once('exit', (code) => {
        if (!this.reign?.steppedDown) void this.end({ reason: 'server-exited', code });
      });
    } catch (err) {
      await this.cleanup(false);
      throw err;
    }
    this.reign = new Reign({
      client: this.client,
      epoch: this.epoch,
      service,
      ...(this.opts.iface ? { iface: this.opts.iface } : {}),
      failureTimeoutMs: this.opts.failureTimeoutMs ?? 30,
      server: () => this.server,
      logger,
      mute: (on) => this.wrap?.mute(on),
      silence: () => this.wrap?.abandon(),
      onSteppedDown: (silentMs) => void this.steppedDown(silentMs),
    });
    this.reign.start();
    this.timers.push(setInterval(() => this.client.report('primary', this.status()), 500));
    logger.log('info', 'primary-started', { epoch: this.epoch, service: `${service.vip}:${service.port}`, pid: this.server?.pid });
  }

  /** What `ftcp status` shows of this node; for the periodic report (it resets the longest stall). */
  status(): Record<string, unknown> {
    const w = this.wrap?.status();
    return {
      mode: this.reign?.quiet ? 'quiet' : 'record',
      epoch: this.epoch,
      connections: w?.connections ?? 0,
      unstableRecords: this.agent?.counters.unstable ?? 0,
      unacknowledgedWrites: this.client.unacknowledged,
      bufferSilentMs: Math.round(this.client.silentForMs()),
      segmentsLogged: w?.recorder.segmentsLogged ?? 0,
      packetsHeld: w?.packetsHeld ?? 0,
      queueOverflows: w?.queue.enobufs ?? 0,
      acksInjected: w?.recorder.acksInjected ?? 0,
      malformedPackets: w?.wrap.malformedTotal ?? 0,
      callsRecorded: this.agent?.counters.recorded ?? 0,
      ...recordingReport(this.agent, w, this.client),
    };
  }

  /** The reign ended (see Reign): the wrap silenced, the server dead and the VIP gone; the rules stay and drop what is left. */
  private async steppedDown(silentMs: number): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    await this.cleanup(true);
    this.finish({ reason: 'stepped-down', silentMs });
  }

  /** Clean shutdown: stops the server, then unwraps the service. */
  async stop(): Promise<void> {
    await this.end({ reason: 'stopped' });
  }

  private async end(e: PrimaryExit): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    await stopServer(this.server);
    // The backup takes the VIP once this primary falls silent; a host that
    // kept it would answer the clients it reaches with resets (no socket is
    // left here). Before the rules go, so nothing leaves unwrapped meanwhile.
    if (this.opts.iface) await dropVip(this.opts.iface, this.opts.service.vip).catch(() => {});
    await this.cleanup(false);
    this.finish(e);
  }

  private async cleanup(keepRules: boolean): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.reign?.stop();
    if (!keepRules) await this.wrap?.stop().catch((err: unknown) => this.opts.logger.log('error', 'rules-removal-failed', { error: String(err) }));
    await this.agent?.close().catch(() => {});
    // Awaited: the process exits next, and must not under the heartbeat's thread.
    await this.client.close();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
