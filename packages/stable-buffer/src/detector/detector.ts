/**
 * Heartbeat failure detection of the primary, FT-TCP 3.10: every message from
 * the primary counts as a heartbeat; after `probeIntervalMs` of silence the
 * buffer probes it; with no answer within `failureTimeoutMs` it is declared
 * failed. A silent primary is therefore declared failed within
 * probeInterval + failureTimeout of its last message, plus timer lateness.
 *
 * A timer that fires late means the buffer's own event loop stalled: the
 * primary's answer may be sitting unread in the socket, so the silence it
 * measures is partly the buffer's. Such a probe is not a verdict: the
 * detector probes once more and waits a whole timeout it could observe.
 * That costs one more timeout of detection only when the buffer itself
 * stalled, and spares a false failover on a loaded host.
 *
 * The detector arms one timer at a time and does not touch it per message:
 * `heard()` only stores a timestamp, so the write path pays one clock read.
 */

/** Time source, injectable so tests control it. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock: a monotonic millisecond counter and Node's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface DetectorOptions {
  probeIntervalMs: number;
  failureTimeoutMs: number;
  /** Send a probe to the primary. */
  onProbe(): void;
  /** The primary is declared failed; called once per verdict. */
  onFailed(silentForMs: number): void;
  /**
   * The primary declared failed spoke again, with the same epoch (nothing
   * promoted over it yet): the verdict was false, and it is watched again.
   */
  onHeardAfterFailure?(sinceVerdictMs: number): void;
  clock?: Clock;
}

/** What the detector is doing. */
export type DetectorState = 'idle' | 'watching' | 'probing' | 'failed';

export class Detector {
  private readonly clock: Clock;
  private stateValue: DetectorState = 'idle';
  private lastHeard = 0;
  private probeAt = 0;
  private timer: unknown = null;
  /** When the armed timer is due; how late it fires tells of a stall here. */
  private dueAt = 0;
  /** The current probe is the second chance after a stall. */
  private reprobed = false;
  /** Probes sent over the detector's life. */
  probes = 0;
  /** Probes answered only after the primary was declared failed, or never. */
  misses = 0;
  /** Probes repeated because the buffer's own timer fired late. */
  reprobes = 0;
  /** Verdicts the primary outlived (it spoke again before anything was promoted). */
  falseVerdicts = 0;
  private failedAt = 0;

  constructor(private readonly options: DetectorOptions) {
    this.clock = options.clock ?? systemClock;
  }

  get state(): DetectorState {
    return this.stateValue;
  }

  /** Milliseconds since the primary was last heard from. */
  silentFor(): number {
    return this.stateValue === 'idle' ? 0 : this.clock.now() - this.lastHeard;
  }

  /** Starts watching a primary that was just heard from. */
  start(): void {
    this.stop();
    this.stateValue = 'watching';
    this.lastHeard = this.clock.now();
    this.arm(this.options.probeIntervalMs);
  }

  /** Any message from the primary: it is alive. */
  heard(): void {
    if (this.stateValue === 'watching') {
      this.lastHeard = this.clock.now();
    } else if (this.stateValue === 'failed') {
      // The verdict stays in force for whoever already acted on it (a backup
      // promoting fences this primary by epoch), but it is no longer news: a
      // backup subscribing from now on must not be told to take over from a
      // primary that is talking, and a second silence needs a second verdict.
      this.falseVerdicts++;
      const since = this.clock.now() - this.failedAt;
      this.start();
      this.options.onHeardAfterFailure?.(since);
    } else if (this.stateValue === 'probing') {
      // Re-arm from this answer, not from the probe's deadline, so the bound
      // probeInterval + failureTimeout holds from every message (once per probe).
      this.lastHeard = this.clock.now();
      this.stateValue = 'watching';
      this.reprobed = false;
      if (this.timer !== null) this.clock.clearTimeout(this.timer);
      this.arm(this.options.probeIntervalMs);
    }
  }

  /** Stops watching (the primary stepped down or a backup was promoted). */
  stop(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.stateValue = 'idle';
  }

  private arm(ms: number): void {
    this.dueAt = this.clock.now() + Math.max(0, ms);
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, ms));
  }

  private fire(): void {
    this.timer = null;
    const now = this.clock.now();
    if (this.stateValue === 'probing') {
      if (this.lastHeard >= this.probeAt) {
        this.stateValue = 'watching';
        this.reprobed = false;
      } else if (!this.reprobed && now - this.dueAt > this.stallSlackMs()) {
        this.reprobed = true;
        this.reprobes++;
        this.probe(now);
        return;
      } else {
        this.stateValue = 'failed';
        this.failedAt = now;
        this.misses++;
        this.options.onFailed(now - this.lastHeard);
        return;
      }
    }
    if (this.stateValue !== 'watching') return;
    const silent = now - this.lastHeard;
    if (silent < this.options.probeIntervalMs) {
      this.arm(this.options.probeIntervalMs - silent);
      return;
    }
    this.probe(now);
  }

  private probe(now: number): void {
    this.stateValue = 'probing';
    this.probeAt = now;
    this.probes++;
    this.options.onProbe();
    this.arm(this.options.failureTimeoutMs);
  }

  /** Lateness of a timer that says this process stalled rather than the primary. */
  private stallSlackMs(): number {
    return Math.max(5, this.options.failureTimeoutMs / 2);
  }
}
