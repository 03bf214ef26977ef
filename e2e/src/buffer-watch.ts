/**
 * Watching a stable buffer's status from inside a host, to tell when a
 * backup that joined late has caught up with the log (issue 5: "A backup
 * started after the primary catches up from the log and then follows").
 * One long-lived poller (tools/buffer-status.ts) per watch; see there why
 * not `ftcp status`.
 */
import { sleep } from './harness.js';
import type { HostProcess } from './process.js';
import type { HostRole, Testbed } from './testbed.js';
import { BUFFER_STATUS_TOOL } from './tool-paths.js';

/** A backup as the buffer sees it: its registration, and the last report it sent. */
export interface BufferBackupRow {
  readonly node: string;
  /** 0 observer, 1 hot, 2 cold (the buffer's numbering). */
  readonly mode: number;
  /** Every record below this LSN was consumed. */
  readonly consumed: number;
  readonly lag: number;
}

/** What one poll of the buffer's status said (see tools/buffer-status.ts). */
export interface BufferSnapshot {
  readonly t: number;
  readonly epoch: number;
  readonly owner: string;
  readonly headLsn: number;
  readonly firstLsn: number;
  /** Every call record the log holds: the sum over streams of their last contiguous call number. */
  readonly calls: number;
  readonly backups: readonly BufferBackupRow[];
  readonly nodes: ReadonlyArray<{ node: string; role: string; ageMs: number; mode?: string; epoch?: number; callsPlayed?: number; callsRecorded?: number; connections?: number; divergences?: number }>;
}

/** The buffer's numbering of backup modes. */
export const BUFFER_MODE = { observer: 0, hot: 1, cold: 2 } as const;

/** How a late backup's catch-up went. */
export interface CatchUp {
  /** The node that joined. */
  readonly node: string;
  readonly mode: 'hot' | 'cold';
  /** The first snapshot after the backup was ready: what it had to catch up with. */
  readonly atJoin: BufferSnapshot | undefined;
  /** The snapshot that showed it caught up, or undefined. */
  readonly caughtUp: BufferSnapshot | undefined;
  /**
   * The snapshot that showed it reporting as a primary before it caught up
   * (it was promoted: a failure was declared while it caught up), or undefined.
   */
  readonly promotedFirst: BufferSnapshot | undefined;
  /** The last snapshot seen, for a failure message. */
  readonly last: BufferSnapshot | undefined;
}

/**
 * Whether `node` has caught up with `atJoin`: registered in its mode and,
 * when hot, it consumed every record and its replica played every call the
 * log held at `atJoin` (its report, sent every 500 ms, says how many it played).
 * A cold backup replays only after a failure, so registering is all it does.
 */
export function caughtUpWith(s: BufferSnapshot, atJoin: BufferSnapshot, node: string, mode: 'hot' | 'cold'): boolean {
  const row = s.backups.find((b) => b.node === node);
  if (row === undefined || row.mode !== BUFFER_MODE[mode]) return false;
  if (mode === 'cold') return true;
  const report = s.nodes.find((n) => n.node === node);
  return row.consumed >= atJoin.headLsn && (report?.callsPlayed ?? -1) >= atJoin.calls;
}

/** A poller of the buffer's status running in one host; {@link Testbed.destroy} kills it if the test does not. */
export class BufferWatch {
  private constructor(readonly process: HostProcess) {}

  /** Starts polling `endpoint` from `role` every `intervalMs`, for at most `maxMs`. */
  static start(bed: Testbed, role: HostRole, endpoint: string, opts: { intervalMs?: number; maxMs?: number } = {}): BufferWatch {
    const p = bed.spawn(role, process.execPath, [
      BUFFER_STATUS_TOOL, '--buffer', endpoint, '--interval-ms', String(opts.intervalMs ?? 100), '--max-ms', String(opts.maxMs ?? 90_000),
    ]);
    return new BufferWatch(p);
  }

  /** The latest snapshot at or after `since` (ms since the epoch), or undefined. */
  latest(since = 0): BufferSnapshot | undefined {
    const lines = this.process.stdoutLines;
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = lines[i]!;
      if (!l.startsWith('{"ev":"status"')) continue;
      const s = JSON.parse(l) as BufferSnapshot;
      return s.t >= since ? s : undefined;
    }
    return undefined;
  }

  /**
   * Waits until `node` (started and ready at `readyAt`) has caught up with
   * what the log held at its first snapshot after `readyAt`; bounded by
   * `timeoutMs` and by `giveUp` (e.g. the client ended). Never throws: the
   * result says how far it got.
   */
  async waitForCatchUp(node: string, mode: 'hot' | 'cold', readyAt: number, timeoutMs: number, giveUp: () => boolean = () => false): Promise<CatchUp> {
    const until = Date.now() + timeoutMs;
    let atJoin: BufferSnapshot | undefined;
    let last: BufferSnapshot | undefined;
    while (Date.now() < until && !giveUp() && this.process.exitStatus === undefined) {
      const s = this.latest(readyAt);
      if (s !== undefined) {
        atJoin ??= s;
        last = s;
        // A promoted node reports as the primary: whatever it played since, it did not catch up as a backup.
        if (s.nodes.some((n) => n.node === node && n.role === 'primary')) return { node, mode, atJoin, caughtUp: undefined, promotedFirst: s, last };
        if (caughtUpWith(s, atJoin, node, mode)) return { node, mode, atJoin, caughtUp: s, promotedFirst: undefined, last };
      }
      await sleep(20);
    }
    return { node, mode, atJoin, caughtUp: undefined, promotedFirst: undefined, last };
  }

  /** Ends the poller. */
  async stop(): Promise<void> {
    await this.process.stop('SIGTERM', 2000).catch(() => undefined);
  }
}
