/**
 * The parts of one crash's client-visible gap, for the failover benchmark
 * (failover.ts): from the e2e report's crash cut, the buffer's verdicts, the
 * client's first byte after the crash, and the backup's takeover events
 * (its JSON log lines, `ftcp backup`'s takeOver in
 * packages/cli/src/runtime/backup.ts).
 *
 * The takeover, in the backup's order: `promoted`; cold only,
 * `replica-started` (the replica's shim said HELLO); `log-fetched` (the feed
 * holds every record up to the promotion's head); `vip-moved`;
 * `rolled-forward` (the replica played every logged call); then
 * `connections-rebuilt` and `takeover-complete`. The replica plays records
 * as they arrive, so the roll-forward runs alongside the log fetch and the
 * VIP step; the replica's rebuilds wait for both it and the VIP (the agent
 * goes live after the VIP moved).
 */
import type { FailoverReport } from '@ftcp/e2e';

export interface CrashSample {
  seed: number;
  ok: boolean;
  falseDetection: boolean;
  gapMs: number | null;
  /** Crash to the buffer's verdict. */
  detectionMs: number | null;
  /** Verdict to the new epoch (`promoted`). */
  promotionMs: number | null;
  /** Cold: promotion to the replica process's first HELLO (null for hot). */
  replicaStartMs: number | null;
  /** Promotion to every record up to its head fetched (`log-fetched`); cold, the replica's start within it. */
  logFetchMs: number | null;
  /** Log fetched to VIP moved: the wrap's adoption, the address, the first gratuitous ARP. */
  vipMs: number | null;
  /** Promotion to `rolled-forward`: the whole roll-forward (cold: start, fetch and replay), alongside the log fetch and the VIP step. */
  rollForwardMs: number | null;
  /** The roll-forward left once the VIP had moved (0 when it was done before): its share of the gap. */
  rollForwardAfterVipMs: number | null;
  /** The later of rolled forward and VIP moved, to every connection rebuilt (`connections-rebuilt`). */
  rebuildMs: number | null;
  /** Connections rebuilt to the client's first byte after the crash. */
  firstByteAfterMs: number | null;
  /** VIP moved to `takeover-complete`: roll-forward after the VIP and rebuild together (the measure before they were split). */
  rollForwardRebuildMs: number | null;
  /** The log up to the promotion's head as the backup fetched it: call data plus client segment bytes (`log-fetched`'s `logBytes`), MiB. */
  logMiB: number | null;
  /** Cold: rollForwardMs per MiB of logMiB (null for hot). */
  msPerMiBReplayed: number | null;
  /** The client's echoed bytes when the crash was due, MiB (what earlier runs divided by). */
  crashAtMiB: number | null;
  error?: string;
}

export interface LoggedEvent {
  /** ms since the epoch, from the line's `t`. */
  readonly t: number;
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * The first of each event in a process's JSON log lines, by name. The
 * report's lines carry a stream prefix (`out ` or `err `); other lines are
 * skipped.
 */
export function firstEvents(lines: readonly string[]): Map<string, LoggedEvent> {
  const out = new Map<string, LoggedEvent>();
  for (const raw of lines) {
    const line = raw.replace(/^(out|err) /, '');
    if (!line.startsWith('{')) continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const event = v['event'];
    const t = typeof v['t'] === 'string' ? Date.parse(v['t']) : typeof v['t'] === 'number' ? v['t'] : Number.NaN;
    if (typeof event !== 'string' || !Number.isFinite(t) || out.has(event)) continue;
    out.set(event, { t, fields: v });
  }
  return out;
}

const MiB = 1024 * 1024;

export function sample(r: FailoverReport): CrashSample {
  const cut = r.crash?.cutAt;
  const t = r.takeover;
  const ev = firstEvents(r.logs['backup'] ?? []);
  const at = (name: string): number | undefined => ev.get(name)?.t;
  const since = (a: number | undefined, b: number | undefined): number | null => (a === undefined || b === undefined ? null : a - b);
  const resumedAt = cut !== undefined && r.resumedAfterCrashMs !== undefined ? cut + r.resumedAfterCrashMs : undefined;
  // A verdict before the crash was a false one (retracted when the primary
  // spoke again); the crash's detection is the first verdict after it.
  const verdicts = t.bufferVerdicts ?? [];
  const detected = cut === undefined ? undefined : verdicts.find((v) => v >= cut);
  const falseDetection = cut !== undefined && ((t.promoted !== undefined && t.promoted < cut) || verdicts.some((v) => v < cut));
  const fetched = at('log-fetched');
  const rolled = at('rolled-forward');
  const rebuilt = at('connections-rebuilt') ?? t.takeoverComplete;
  const rebuildFrom = rolled === undefined || t.vipMoved === undefined ? undefined : Math.max(rolled, t.vipMoved);
  const logBytes = ev.get('log-fetched')?.fields['logBytes'] ?? t.complete?.['logBytes'];
  const logMiB = typeof logBytes === 'number' ? logBytes / MiB : null;
  const rollForwardMs = since(rolled, t.promoted);
  return {
    seed: r.seed,
    ok: r.client?.ok === true,
    falseDetection,
    gapMs: r.crashGapMs ?? r.gapMs ?? null,
    detectionMs: since(detected, cut),
    promotionMs: since(t.promoted, detected),
    replicaStartMs: r.mode === 'cold' ? since(at('replica-started'), t.promoted) : null,
    logFetchMs: since(fetched, t.promoted),
    vipMs: since(t.vipMoved, fetched),
    rollForwardMs,
    rollForwardAfterVipMs: rolled === undefined || t.vipMoved === undefined ? null : Math.max(0, rolled - t.vipMoved),
    rebuildMs: since(rebuilt, rebuildFrom),
    firstByteAfterMs: since(resumedAt, rebuilt),
    rollForwardRebuildMs: since(t.takeoverComplete, t.vipMoved),
    logMiB,
    msPerMiBReplayed: r.mode === 'cold' && rollForwardMs !== null && logMiB ? rollForwardMs / logMiB : null,
    crashAtMiB: r.crashAtBytes === null ? null : r.crashAtBytes / MiB,
    ...(r.clientError ? { error: `${r.clientError.code}: ${r.clientError.message}` } : r.harnessError ? { error: r.harnessError } : {}),
  };
}

/** The parts reported per mode, in the takeover's order (the CrashSample fields of the same names). */
export const PARTS = [
  'gapMs',
  'detectionMs',
  'promotionMs',
  'replicaStartMs',
  'logFetchMs',
  'vipMs',
  'rollForwardMs',
  'rollForwardAfterVipMs',
  'rebuildMs',
  'firstByteAfterMs',
  'rollForwardRebuildMs',
  'logMiB',
  'msPerMiBReplayed',
] as const satisfies readonly (keyof CrashSample)[];
