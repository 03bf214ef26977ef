/**
 * A writer's heartbeat on a thread of its own. The buffer declares a primary
 * failed when no probe is answered within the failure timeout (tens of
 * milliseconds); a node's main thread can be busy for longer than that while
 * it is perfectly alive: a promoted cold backup rolling its replica forward
 * was measured not answering for 45-70 ms, and was declared failed in 3 of 4
 * takeovers. A false verdict is not harmless: a second backup would take over
 * from a healthy node.
 *
 * So a worker thread holds a second connection to the buffer, says hello as
 * the epoch owner's heartbeat, and answers the buffer's probes with its own
 * event loop. What it vouches for is the host and the process; a crash of
 * either silences it at once, so fail-stop detection is as fast as before.
 * A main thread that is stuck, not just busy, must not be vouched for: the
 * main thread beats a shared counter, and the worker stops answering when
 * the counter has not moved for `stallLimitMs` (then the buffer's usual
 * timeout applies).
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { ClientOptions } from './client.js';
import { silentLogger, type Logger } from './log.js';

/** Default longest main-thread stall the heartbeat covers (ms). */
export const DEFAULT_STALL_LIMIT_MS = 1000;
/** How often the main thread beats (ms). */
const BEAT_INTERVAL_MS = 10;

export interface HeartbeatOptions extends Pick<ClientOptions, 'endpoint' | 'node' | 'curve'> {
  /**
   * The epoch this node owns as the writer; omitted, the worker starts and
   * connects but says nothing until {@link Heartbeat.attach}.
   */
  epoch?: number;
  /** Longest main-thread stall (ms) the worker still answers probes through. */
  stallLimitMs?: number;
  logger?: Logger;
}

/** What the worker is given (structured-clonable). */
export interface HeartbeatWorkerData {
  endpoint: string;
  node: string;
  /** 0: not yet the writer. */
  epoch: number;
  curve: ClientOptions['curve'] | null;
  stallLimitMs: number;
  /** One Int32: the main thread's beat counter. */
  beats: SharedArrayBuffer;
}

/** What the main thread tells the worker. */
export type HeartbeatControl = { kind: 'attach'; epoch: number } | { kind: 'stop' };

/** What the worker tells the main thread. */
export type HeartbeatWorkerEvent =
  | { kind: 'connected' }
  | { kind: 'attached'; epoch: number }
  | { kind: 'refused'; code: string; message: string }
  | { kind: 'stalled' | 'resumed'; ms: number }
  | { kind: 'bad-frame' | 'failed'; message: string };

/**
 * Emits `connected` (each connection to the buffer), `attached` (each hello
 * the buffer accepted), `refused` (the epoch is no longer this node's) and
 * `stalled`/`resumed` (the worker stopped, or went back to, answering
 * because of the main thread).
 */
export class Heartbeat extends EventEmitter {
  private readonly worker: Worker;
  private readonly beatTimer: NodeJS.Timeout;
  private readonly exited: Promise<void>;
  private stopped = false;
  private ended = false;

  constructor(options: HeartbeatOptions) {
    super();
    const logger: Logger = options.logger ?? silentLogger;
    const beats = new SharedArrayBuffer(4);
    const counter = new Int32Array(beats);
    const data: HeartbeatWorkerData = {
      endpoint: options.endpoint,
      node: options.node,
      epoch: options.epoch ?? 0,
      curve: options.curve ?? null,
      stallLimitMs: options.stallLimitMs ?? DEFAULT_STALL_LIMIT_MS,
      beats,
    };
    this.worker = new Worker(new URL('./heartbeat-worker.js', import.meta.url), { workerData: data });
    // The heartbeat must never be what keeps a node's process alive.
    this.worker.unref();
    this.beatTimer = setInterval(() => Atomics.add(counter, 0, 1), BEAT_INTERVAL_MS);
    this.beatTimer.unref();
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', () => {
        this.ended = true;
        resolve();
      }),
    );
    this.worker.on('message', (ev: HeartbeatWorkerEvent) => {
      const { kind, ...fields } = ev;
      if (kind === 'stalled' || kind === 'resumed') logger.log('warn', `heartbeat-main-${kind}`, fields);
      else if (kind !== 'connected' && kind !== 'attached') logger.log('warn', `heartbeat-${kind}`, fields);
      this.emit(kind, ev);
    });
    this.worker.on('error', (err) => logger.log('error', 'heartbeat-worker-error', { error: String(err) }));
  }

  /** True until the worker thread has ended. */
  get running(): boolean {
    return !this.ended;
  }

  /**
   * Vouches for `epoch` from now on (and says hello for it). Starting the
   * worker takes 100-200 ms on a loaded host, so a backup starts it in
   * standby and attaches it the moment it is promoted.
   */
  attach(epoch: number): void {
    if (!this.stopped) this.post({ kind: 'attach', epoch });
  }

  private post(m: HeartbeatControl): void {
    this.worker.postMessage(m);
  }

  /** Stops answering probes and ends the worker; idempotent. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      clearInterval(this.beatTimer);
      this.post({ kind: 'stop' });
    }
    // Not worker.terminate(): tearing down a thread that holds a ZeroMQ socket
    // aborted the process in a test here. A worker slow to end is unref'd and
    // keeps nothing alive, so waiting a bounded time is enough.
    let late: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise<void>((r) => (late = setTimeout(r, 1000)))]);
    clearTimeout(late);
  }
}
