/**
 * Issue 5's end-to-end failover runs for any server: a scenario is a server
 * command, a client command and a checker ({@link Scenario}), and
 * {@link runScenario} runs it once under ftcp with one fault injected at a
 * random point of the client's run:
 *
 * - `crash-primary`: the primary host dies fail-stop (links down, then
 *   SIGKILL of everything in it); the backup must take over.
 * - `restart-buffer`: the stable buffer is SIGKILLed and started again on
 *   the same data directory and endpoint; the primary must only pause (go
 *   quiet and resume), and the backup must stay a backup.
 * - `partition-replica`: the replica link between primary and backup goes
 *   silent; the buffer (on the backup's end) loses the primary, the backup
 *   takes over; once it has, the link is healed and the old primary must
 *   learn it was fenced and exit 4 without a segment reaching the client.
 * - `none`: no fault (a baseline).
 *
 * The bed: `ftcp buffer serve` on the backup's end of the replica link,
 * `ftcp primary` wrapping the server on VIP:port, `ftcp backup --mode M`
 * with the same server command, the client in the client's namespace with
 * a capture there. The fault point is drawn from a seeded PRNG: the seed is
 * printed before anything starts, and `FTCP_E2E_SEED=<seed>` replays the
 * same point (and the same client seed). It is a fraction of the client's
 * progress when the scenario can read progress (events, bytes on disk),
 * else a time after the client started.
 *
 * Everything the checker and the test need, and everything a person needs
 * when it fails (each process's log, the client's output, the checker's
 * problems, a capture summary), comes back in one {@link ScenarioReport}.
 * Every wait is bounded; the bed and every temporary directory are removed
 * on every path out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AckStrategy } from '@ftcp/ssw';
import type { Capture } from './capture.js';
import { registerLive, unregisterLive, type SyncDestroyable } from './cleanup.js';
import {
  allLines,
  exitWithin,
  mulberry32,
  parseLogLine,
  scenarioSeed,
  sleep,
  summarizeCapture,
  takeoverTimes,
  waitForAnyLine,
  watchStalls,
  type BackupMode,
  type CaptureSummary,
  type Speaker,
  type StallSnapshot,
  type TakeoverTimes,
} from './harness.js';
import { BufferWatch } from './buffer-watch.js';
import { nextPort } from './names.js';
import type { ExitStatus, HostProcess } from './process.js';
import { Testbed, type CrashReport, type HostRole, type LinkRate } from './testbed.js';
import { FTCP_BIN } from './tool-paths.js';

/** The fault {@link runScenario} injects; see the module comment. */
export type FaultKind = 'crash-primary' | 'restart-buffer' | 'partition-replica' | 'none';

/** What a scenario's hooks may use. */
export interface ScenarioContext {
  readonly bed: Testbed;
  readonly vip: string;
  /** The service's port. */
  readonly port: number;
  /** A temporary directory of this run (files to serve, keys, downloads); removed after it. */
  readonly dir: string;
  /** The run's seed. */
  readonly seed: number;
  /** A seed for the client's data, drawn from the run's seed. */
  readonly clientSeed: number;
  readonly mode: BackupMode | null;
  readonly wrapped: boolean;
}

/** A command to start in a host. */
export interface CommandSpec {
  readonly cmd: string;
  readonly args: readonly string[];
  /** Extra environment (passed through `ftcp primary`/`backup` to the server). */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory (of `ftcp primary`/`backup`, which the server inherits). */
  readonly cwd?: string;
}

/** How a client command ended and what it said. */
export interface ClientOutcome {
  readonly command: string;
  /** Its exit status; undefined if it outlived its time limit (it was killed then). */
  readonly exit: ExitStatus | undefined;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
  /** Its stdout lines that are JSON events (`{"ev": ...}`), parsed. */
  readonly events: ReadonlyArray<{ ev: string; [k: string]: unknown }>;
  /** When it was started and when it ended, ms since the epoch. */
  readonly startedAt: number;
  readonly endedAt: number | undefined;
}

/** A checker's judgement: nothing in `problems` means the client saw everything right. */
export interface Verdict {
  /** One sentence per thing that is wrong, with the numbers. */
  readonly problems: readonly string[];
  /** What the checker measured, for the report (sizes, hashes, gaps, ...). */
  readonly facts: Readonly<Record<string, unknown>>;
}

/** A server, a client and a checker; see the module comment. */
export interface Scenario {
  /** A short name for logs (`echo`, `http`, `redis`, ...). */
  readonly name: string;
  /** Makes what the server and client need under `ctx.dir` (once the bed exists, before any process starts). */
  prepare?(ctx: ScenarioContext): Promise<void> | void;
  /** The server command (run bare, under `ftcp primary`, and under `ftcp backup`). */
  server(ctx: ScenarioContext): CommandSpec;
  /**
   * Resolves once the server serves: from a line of `server` (the `ftcp
   * primary` process, whose output carries the server's, or the bare
   * server), or by probing from the client's host. Bounded.
   */
  ready(ctx: ScenarioContext, server: HostProcess): Promise<void>;
  /** A rate limit on the client's link for the client's run (so a fault lands mid-transfer). */
  readonly clientLink?: LinkRate;
  /** The client command, run in the client's host. */
  client(ctx: ScenarioContext): CommandSpec;
  /**
   * How far the client is, as a fraction in [0, 1], or undefined while it
   * cannot tell. Without it, the fault point is a time (see `faultWindowMs`).
   */
  progress?(client: HostProcess, ctx: ScenarioContext): number | undefined;
  /** Fault window as fractions of progress; default [0.2, 0.8] (the run's options win). */
  readonly faultWindow?: readonly [number, number];
  /** Fault window in ms after the client started, for scenarios without progress. */
  readonly faultWindowMs?: readonly [number, number];
  /** Longest the client may run, ms; then it is killed and the run reports it. */
  readonly clientTimeoutMs: number;
  /** A second client run after the first (for example: does the server still serve?). */
  followUp?(ctx: ScenarioContext): CommandSpec;
  /** Judges the client's run (and the follow-up's). May read files under `ctx.dir`. */
  check(run: { client: ClientOutcome; followUp: ClientOutcome | undefined }, ctx: ScenarioContext): Verdict | Promise<Verdict>;
}

/** Options of {@link runScenario}; every field has a default. */
export interface ScenarioOptions {
  /** The backup's mode, or null for no backup (then no fault but `none`). Default `hot`. */
  readonly mode?: BackupMode | null;
  /** Run the server under `ftcp primary` (default) or bare in the primary's host (then no backup, no fault). */
  readonly wrapped?: boolean;
  /** Default `crash-primary` with a backup, `none` without. */
  readonly fault?: FaultKind;
  /** Fault window as fractions of the client's progress; default the scenario's, else [0.2, 0.8]. */
  readonly faultWindow?: readonly [number, number];
  /** The PRNG seed; default `FTCP_E2E_SEED` from the environment, else random. */
  readonly seed?: number;
  /** The buffer's heartbeat probe interval, ms; default 10. */
  readonly probeIntervalMs?: number;
  /**
   * The buffer's, the primary's and the backup's failure timeout, ms;
   * default `FTCP_E2E_FAILURE_TIMEOUT_MS` from the environment, else
   * {@link TEST_FAILURE_TIMEOUT_MS}.
   */
  readonly failureTimeoutMs?: number;
  /** The buffer's `--durability`; default `memory` (`commit` makes records survive a buffer crash). */
  readonly durability?: 'memory' | 'commit' | 'fsync';
  /** The primary's `--ack` strategy; default the command's own (eager). */
  readonly ack?: AckStrategy;
  /** `restart-buffer`: ms between the buffer's death and its restart; default 0 (restart at once). */
  readonly bufferDownMs?: number;
  /** `partition-replica`: ms after the backup's `takeover-complete` before the link is healed; default 300. */
  readonly healAfterMs?: number;
  /** Snapshot sockets and the buffer's status when the client is still for this long, ms; default 3000. */
  readonly stallMs?: number;
  /** Capture in the client's namespace; default true. */
  readonly capture?: boolean;
  /** Where progress lines go (the seed among them); default console.log. */
  readonly log?: (line: string) => void;
  /**
   * Start the backup late (issue 5: "A backup started after the primary
   * catches up from the log and then follows"): not before the client, but
   * once the client's progress reaches a seeded fraction in this window.
   * The fault then waits, besides its own point, until the backup has caught
   * up (see {@link BackupJoin}). Needs a scenario with progress, and a
   * fault window above this one. Default: the backup starts before the client.
   */
  readonly backupJoinWindow?: readonly [number, number];
}

/** What a late backup's start did ({@link ScenarioOptions.backupJoinWindow}), ms since the epoch. */
export interface BackupJoin {
  /** The client's progress at which the backup was due to start. */
  readonly fraction: number;
  readonly startedAt: number;
  /** When `ftcp backup` printed `ready`. */
  readonly readyAt: number | undefined;
  /** The client's progress when it started. */
  readonly startedAtProgress: number | undefined;
  /** The log's head and the calls it held (the sum of every stream's last call number) just after `ready`. */
  readonly headLsnAtJoin: number | undefined;
  readonly callsAtJoin: number | undefined;
  /**
   * When the buffer's status first showed the backup registered in its mode
   * and, for a hot backup, having consumed every record and its replica
   * having played every call the log held at `ready` ({@link caughtUpWith}).
   * Undefined if it never did.
   */
  readonly caughtUpAt: number | undefined;
  /** The last status seen of the backup: the buffer's row of it and its own report. */
  readonly lastSeen: Readonly<Record<string, unknown>> | undefined;
}

/** Where the fault was due. */
export type FaultPoint = { readonly by: 'progress'; readonly fraction: number } | { readonly by: 'time'; readonly ms: number };

/** What `restart-buffer` did, ms since the epoch. */
export interface BufferRestart {
  readonly killedAt: number;
  /** When the killed buffer was seen gone. */
  readonly deadAt: number;
  readonly restartedAt: number;
  /** When the new buffer printed `ready`. */
  readonly readyAt: number | undefined;
}

/** What `partition-replica` did, ms since the epoch. */
export interface PartitionReport {
  readonly partitionedAt: number;
  /** When the link was healed (undefined if the run never got there). */
  readonly healedAt: number | undefined;
  /** Whether the old primary's `ftcp primary` had exited already when the link was healed. */
  readonly primaryExitedBeforeHeal: boolean | undefined;
  /** How the old primary's `ftcp primary` ended after the heal, and when it was seen gone. */
  readonly primaryExit: ExitStatus | undefined;
  readonly primaryExitAt: number | undefined;
}

/** A notable line of an ftcp process's log. */
export interface NodeEvent {
  readonly event: string;
  /** ms since the epoch. */
  readonly t: number | undefined;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** Everything {@link runScenario} saw. */
export interface ScenarioReport {
  readonly scenario: string;
  readonly mode: BackupMode | null;
  readonly wrapped: boolean;
  readonly fault: FaultKind;
  readonly seed: number;
  readonly clientSeed: number;
  /** The failure timeout the buffer and the nodes ran with, ms. */
  readonly failureTimeoutMs: number;
  readonly vip: string;
  readonly port: number;
  /** Where the fault was due (null: no fault). */
  readonly faultPoint: FaultPoint | null;
  /** When it was injected (crash cut, buffer kill, partition), ms since the epoch. */
  readonly faultAt: number | undefined;
  readonly crash: CrashReport | undefined;
  readonly bufferRestart: BufferRestart | undefined;
  readonly partition: PartitionReport | undefined;
  /** The late backup's start, when {@link ScenarioOptions.backupJoinWindow} was given. */
  readonly backupJoin: BackupJoin | undefined;
  readonly client: ClientOutcome | undefined;
  readonly followUp: ClientOutcome | undefined;
  /** The checker's judgement; a checker that threw is one problem. */
  readonly verdict: Verdict | undefined;
  readonly takeover: TakeoverTimes;
  /** Warnings, errors and takeover events of each ftcp process, by process name. */
  readonly nodeEvents: Readonly<Record<string, readonly NodeEvent[]>>;
  /** How each process ended, or null if it was still running when the run ended (before the bed's teardown). */
  readonly exits: Readonly<Record<string, ExitStatus | null>>;
  readonly capture: CaptureSummary | undefined;
  /** The speakers (by MAC) of the segments from the VIP at or after the fault. */
  readonly speakersAfterFault: readonly Speaker[];
  /** Output of each process (stdout and stderr lines), for failure messages. */
  readonly logs: Readonly<Record<string, readonly string[]>>;
  readonly stalls: readonly StallSnapshot[];
  /** What went wrong in the harness itself (a bounded wait that ran out), if anything. */
  readonly harnessError: string | undefined;
}

/**
 * The failure timeout of test runs, ms, unless `FTCP_E2E_FAILURE_TIMEOUT_MS`
 * says otherwise. Not the product's 30 ms default: on a loaded two-core
 * machine (CI, or tests beside other work) a 30 ms timeout now and then
 * declares a healthy but starved node failed, and a takeover before the
 * fault is not what a test sets out to check. The benchmark measures 30 ms.
 */
export const TEST_FAILURE_TIMEOUT_MS = 100;

/** The failure timeout a run uses: its option, else the environment's, else {@link TEST_FAILURE_TIMEOUT_MS}. */
export function testFailureTimeoutMs(option: number | undefined): number {
  return option ?? envNumber('FTCP_E2E_FAILURE_TIMEOUT_MS') ?? TEST_FAILURE_TIMEOUT_MS;
}

/** A positive number from the environment, or undefined when unset. */
function envNumber(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${v}`);
  return n;
}

/** Events of ftcp processes a report keeps besides every warning and error. */
const NOTABLE = new Set(['ready', 'promoted', 'listening', 'primary-failed', 'failure-detected', 'vip-moved', 'takeover-complete', 'quiet', 'resumed', 'stepping-down']);

function nodeEventsOf(p: HostProcess): NodeEvent[] {
  const out: NodeEvent[] = [];
  for (const line of allLines(p)) {
    const e = parseLogLine(line);
    if (e === undefined) continue;
    const level = e.fields['level'];
    if (NOTABLE.has(e.event) || level === 'warn' || level === 'error' || level === 50 || level === 40) out.push({ event: e.event, t: e.time, fields: e.fields });
  }
  return out;
}

/** What a finished client process did, for a report. */
export function outcomeOf(p: HostProcess, startedAt: number, endedAt: number | undefined): ClientOutcome {
  return {
    command: p.commandLine,
    exit: p.exitStatus,
    stdout: [...p.stdoutLines],
    stderr: [...p.stderrLines],
    events: p.events(),
    startedAt,
    endedAt,
  };
}

/**
 * Waits up to `ms` for a client to exit; one that does not is killed, and
 * `problem` says so. `endedAt` is when it was seen gone (undefined if killed).
 */
export async function awaitClient(p: HostProcess, ms: number, problem: string): Promise<{ endedAt: number | undefined; problem: string | undefined }> {
  const exit = await exitWithin(p, ms);
  if (exit !== undefined) return { endedAt: Date.now(), problem: undefined };
  await p.stop('SIGKILL', 2000).catch(() => undefined);
  return { endedAt: undefined, problem };
}

/** Runs the scenario's follow-up client in the client host, if it has one, as `follow-up` in `procs`. */
export async function runFollowUp(
  bed: Testbed,
  scenario: Scenario,
  ctx: ScenarioContext,
  procs: Record<string, HostProcess>,
): Promise<{ outcome: ClientOutcome | undefined; problem: string | undefined }> {
  if (scenario.followUp === undefined) return { outcome: undefined, problem: undefined };
  const spec = scenario.followUp(ctx);
  const startedAt = Date.now();
  const p = bed.spawn('client', spec.cmd, spec.args, { ...(spec.env ? { env: spec.env } : {}), ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}) });
  procs['follow-up'] = p;
  const r = await awaitClient(p, scenario.clientTimeoutMs, `the follow-up client did not exit within ${scenario.clientTimeoutMs} ms`);
  return { outcome: outcomeOf(p, startedAt, r.endedAt), problem: r.problem };
}

/** Removes a run's temporary directories, also from an exit hook. */
export class TempDirs implements SyncDestroyable {
  private readonly dirs: string[] = [];
  constructor() {
    registerLive(this);
  }
  make(prefix: string): string {
    const d = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }
  add(dir: string): void {
    this.dirs.push(dir);
  }
  destroySync(): void {
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    unregisterLive(this);
  }
}

/**
 * Runs a scenario once; see the module comment. Throws only when the bed or
 * a process cannot be set up (the message quotes the logs); anything that
 * goes wrong after the client started is in the report (`verdict`,
 * `harnessError`, `client.exit`) for the test to judge.
 */
export async function runScenario(scenario: Scenario, opts: ScenarioOptions = {}): Promise<ScenarioReport> {
  const wrapped = opts.wrapped ?? true;
  const mode = wrapped ? (opts.mode === undefined ? 'hot' : opts.mode) : null;
  const fault: FaultKind = mode === null ? 'none' : (opts.fault ?? 'crash-primary');
  const seed = opts.seed ?? scenarioSeed();
  const probeIntervalMs = opts.probeIntervalMs ?? 10;
  const failureTimeoutMs = testFailureTimeoutMs(opts.failureTimeoutMs);
  const log = opts.log ?? ((l: string) => console.log(l));
  const rand = mulberry32(seed);
  // The fraction first, then the client's seed: the order runFailover always drew them in, so old seeds replay.
  let faultPoint: FaultPoint | null = null;
  if (fault !== 'none') {
    const u = rand();
    if (scenario.progress !== undefined) {
      const [lo, hi] = opts.faultWindow ?? scenario.faultWindow ?? [0.2, 0.8];
      faultPoint = { by: 'progress', fraction: lo + (hi - lo) * u };
    } else {
      const [lo, hi] = scenario.faultWindowMs ?? [1000, 3000];
      faultPoint = { by: 'time', ms: Math.round(lo + (hi - lo) * u) };
    }
  }
  const clientSeed = Math.floor(rand() * 0xffffffff) + 1;
  // Drawn after the client's seed, so the seeds of runs without a late backup replay as before.
  let joinFraction: number | undefined;
  if (opts.backupJoinWindow !== undefined && mode !== null) {
    if (scenario.progress === undefined) throw new Error(`${scenario.name}: a late backup needs a scenario that reports progress`);
    const [lo, hi] = opts.backupJoinWindow;
    joinFraction = lo + (hi - lo) * rand();
  }
  const pointText =
    faultPoint === null ? '' : faultPoint.by === 'progress' ? ` at ${(faultPoint.fraction * 100).toFixed(1)}% of the client's progress` : ` ${faultPoint.ms} ms after the client started`;
  const joinText = joinFraction === undefined ? '' : ` backup starting at ${(joinFraction * 100).toFixed(1)}%`;
  log(`      ${scenario.name}: mode=${mode ?? 'none'} wrapped=${wrapped} fault=${fault}${pointText}${joinText} seed=${seed} (replay: FTCP_E2E_SEED=${seed})`);

  const temps = new TempDirs();
  const dataDir = temps.make('ftcp-e2e-buffer-');
  const dir = temps.make(`ftcp-e2e-${scenario.name}-`);
  let bed: Testbed;
  try {
    bed = await Testbed.create();
  } catch (err) {
    temps.destroySync();
    throw err;
  }
  const port = nextPort();
  const ctx: ScenarioContext = { bed, vip: bed.vip, port, dir, seed, clientSeed, mode, wrapped };
  const procs: Record<string, HostProcess> = {};
  let capture: Capture | undefined;
  let crashReport: CrashReport | undefined;
  let bufferRestart: BufferRestart | undefined;
  let partition: { -readonly [K in keyof PartitionReport]: PartitionReport[K] } | undefined;
  let backupJoin: { -readonly [K in keyof BackupJoin]: BackupJoin[K] } | undefined;
  let faultAt: number | undefined;
  let harnessError: string | undefined;
  let endpoint: string | undefined;
  const stalls: StallSnapshot[] = [];
  const logsOf = (): Record<string, string[]> =>
    Object.fromEntries(Object.entries(procs).map(([name, p]) => [name, [...p.stdoutLines.map((l) => `out ${l}`), ...p.stderrLines.map((l) => `err ${l}`)]]));
  const bufferArgs = (): string[] => [
    'buffer', 'serve', '--listen', endpoint!, '--data-dir', dataDir, '--durability', opts.durability ?? 'memory',
    '--probe-interval', String(probeIntervalMs), '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info',
  ];
  const startBackup = async (): Promise<void> => {
    const server = scenario.server(ctx);
    const spawnOpts = { ...(server.env ? { env: server.env } : {}), ...(server.cwd !== undefined ? { cwd: server.cwd } : {}) };
    procs['backup'] = bed.spawn(
      'backup',
      FTCP_BIN,
      [
        'backup', '--mode', mode!, '--service', `${bed.vip}:${port}`, '--buffer', endpoint!, '--iface', 'lan0', '--node', 'backup-b',
        '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info', '--', server.cmd, ...server.args,
      ],
      spawnOpts,
    );
    await waitForAnyLine(procs['backup'], (l) => l.includes('"ready"'), 20_000, `backup (${mode}) ready`);
  };
  try {
    try {
      await scenario.prepare?.(ctx);
      const server = scenario.server(ctx);
      const spawnOpts = { ...(server.env ? { env: server.env } : {}), ...(server.cwd !== undefined ? { cwd: server.cwd } : {}) };
      if (!wrapped) {
        procs['server'] = bed.spawn('primary', server.cmd, server.args, spawnOpts);
        await scenario.ready(ctx, procs['server']);
      } else {
        endpoint = `tcp://${bed.host('backup').replicaAddr}:${nextPort()}`;
        procs['buffer'] = bed.spawn('backup', FTCP_BIN, bufferArgs());
        await waitForAnyLine(procs['buffer'], (l) => l.includes('"ready"'), 15_000, 'buffer ready');
        procs['primary'] = bed.spawn(
          'primary',
          FTCP_BIN,
          [
            'primary', '--service', `${bed.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--node', 'primary-a', ...(opts.ack ? ['--ack', opts.ack] : []),
            '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info', '--', server.cmd, ...server.args,
          ],
          spawnOpts,
        );
        await waitForAnyLine(procs['primary'], (l) => l.includes('"ready"'), 20_000, 'primary ready');
        await scenario.ready(ctx, procs['primary']);
        if (mode !== null && joinFraction === undefined) await startBackup();
      }
    } catch (err) {
      const logs = Object.entries(logsOf())
        .map(([name, lines]) => `--- ${name}\n${lines.slice(-40).join('\n')}`)
        .join('\n');
      throw new Error(`${scenario.name} setup failed (seed ${seed}): ${(err as Error).message}\n${logs}`, { cause: err });
    }

    if (fault === 'partition-replica') await bed.armPartition();
    if (opts.capture !== false) capture = await bed.capture('client', { filter: `tcp port ${port}` });
    if (scenario.clientLink !== undefined) await bed.limitRate('client', scenario.clientLink);
    const clientSpec = scenario.client(ctx);
    const clientStartedAt = Date.now();
    const client = bed.spawn('client', clientSpec.cmd, clientSpec.args, {
      ...(clientSpec.env ? { env: clientSpec.env } : {}),
      ...(clientSpec.cwd !== undefined ? { cwd: clientSpec.cwd } : {}),
    });
    procs['client'] = client;
    const clientDeadline = clientStartedAt + scenario.clientTimeoutMs;
    const progressOf = (): number | undefined => {
      try {
        return scenario.progress?.(client, ctx);
      } catch {
        return undefined;
      }
    };
    const watchdog = watchStalls(
      bed,
      client,
      endpoint,
      opts.stallMs ?? 3000,
      stalls,
      scenario.progress !== undefined ? () => Math.round((progressOf() ?? -1) * 1e6) : undefined,
    );

    /** Resolves at the fault point (or another `point`); throws if the client ends first or the deadline passes. */
    const waitForPoint = async (point: FaultPoint | null = faultPoint, what = 'the fault point'): Promise<void> => {
      for (;;) {
        if (point === null) return;
        if (client.exitStatus !== undefined) {
          throw new Error(`the client ended (${JSON.stringify(client.exitStatus)}) before ${what} (progress ${progressOf()?.toFixed(3) ?? '-'})`);
        }
        if (point.by === 'time' && Date.now() - clientStartedAt >= point.ms) return;
        if (point.by === 'progress' && (progressOf() ?? 0) >= point.fraction) return;
        if (Date.now() >= clientDeadline) throw new Error(`${what} was not reached within ${scenario.clientTimeoutMs} ms (progress ${progressOf()?.toFixed(3) ?? '-'})`);
        await sleep(5);
      }
    };

    /**
     * The late backup: starts at its point, then waits (bounded by the
     * client's deadline) until the buffer's status shows it registered and,
     * when hot, caught up with what the log held once it was ready.
     */
    const joinLate = async (fraction: number): Promise<void> => {
      await waitForPoint({ by: 'progress', fraction }, "the late backup's start");
      const startedAt = Date.now();
      const startedAtProgress = progressOf();
      backupJoin = { fraction, startedAt, startedAtProgress, readyAt: undefined, headLsnAtJoin: undefined, callsAtJoin: undefined, caughtUpAt: undefined, lastSeen: undefined };
      const join = backupJoin;
      const watch = BufferWatch.start(bed, 'backup', endpoint!);
      try {
        await startBackup();
        join.readyAt = Date.now();
        log(`      started the ${mode} backup at ${((startedAtProgress ?? 0) * 100).toFixed(1)}% of the client's progress; ready ${join.readyAt - startedAt} ms later`);
        const c = await watch.waitForCatchUp('backup-b', mode!, join.readyAt, Math.max(0, clientDeadline - Date.now()), () => client.exitStatus !== undefined);
        join.headLsnAtJoin = c.atJoin?.headLsn;
        join.callsAtJoin = c.atJoin?.calls;
        join.lastSeen = c.last === undefined ? undefined : { backups: c.last.backups, nodes: c.last.nodes.filter((n) => n.node === 'backup-b') };
        if (c.promotedFirst !== undefined) throw new Error(`the late ${mode} backup was promoted before it caught up (a failure declared with no fault yet: see FALSE DETECTION)`);
        if (c.caughtUp === undefined) throw new Error(`the late ${mode} backup did not catch up before the client ended (last seen: ${JSON.stringify(join.lastSeen ?? null)})`);
        join.caughtUpAt = c.caughtUp.t;
        log(`      the backup caught up ${join.caughtUpAt - join.readyAt} ms after ready (log head ${join.headLsnAtJoin}, ${join.callsAtJoin} calls at join), at ${((progressOf() ?? 0) * 100).toFixed(1)}% progress`);
      } finally {
        await watch.stop();
      }
    };

    /**
     * A fault that lands after the client has finished tests nothing; say so
     * plainly rather than let the checks fail on a takeover that had no
     * stream to carry.
     */
    const expectStillRunning = (what: string): void => {
      const ended = client.exitStatus !== undefined ? `exited ${JSON.stringify(client.exitStatus)}` : (progressOf() ?? 0) >= 1 ? 'received everything' : undefined;
      if (ended !== undefined) throw new Error(`the client had ${ended} by the time ${what} was in place: the fault missed the stream (progress ${progressOf()?.toFixed(3) ?? '-'})`);
    };

    const injectFault = async (): Promise<void> => {
      if (joinFraction !== undefined) await joinLate(joinFraction);
      if (fault === 'none') return;
      await waitForPoint();
      const b = bed;
      if (fault === 'crash-primary') {
        crashReport = await b.crash('primary');
        faultAt = crashReport.cutAt;
        log(`      crashed the primary at ${new Date(crashReport.cutAt).toISOString()} (killed ${crashReport.killedPids.length} processes)`);
      } else if (fault === 'restart-buffer') {
        const old = procs['buffer']!;
        const killedAt = Date.now();
        faultAt = killedAt;
        old.signal('SIGKILL');
        const gone = await exitWithin(old, 5000);
        if (gone === undefined) throw new Error('the buffer did not die within 5 s of SIGKILL');
        const deadAt = Date.now();
        if ((opts.bufferDownMs ?? 0) > 0) await sleep(opts.bufferDownMs ?? 0);
        const restartedAt = Date.now();
        const again = b.spawn('backup', FTCP_BIN, bufferArgs());
        procs['buffer-2'] = again;
        let readyAt: number | undefined;
        try {
          await waitForAnyLine(again, (l) => l.includes('"ready"'), 15_000, 'restarted buffer ready');
          readyAt = Date.now();
        } finally {
          bufferRestart = { killedAt, deadAt, restartedAt, readyAt };
        }
        log(`      killed the buffer; restarted ${restartedAt - killedAt} ms later, ready after ${(readyAt ?? NaN) - restartedAt} ms`);
      } else {
        const partitionedAt = Date.now();
        await b.partitionReplica('silent');
        const inPlaceAt = Date.now();
        faultAt = partitionedAt;
        partition = { partitionedAt, healedAt: undefined, primaryExitedBeforeHeal: undefined, primaryExit: undefined, primaryExitAt: undefined };
        log(`      partitioned the replica link at ${new Date(partitionedAt).toISOString()} (rules in place ${inPlaceAt - partitionedAt} ms later)`);
        expectStillRunning('the partition');
        try {
          await waitForAnyLine(procs['backup']!, (l) => parseLogLine(l)?.event === 'takeover-complete', 15_000, 'the backup taking over after the partition');
        } catch (err) {
          // Heal anyway, so the run ends with the hosts joined again (and says what the primary did).
          await b.healReplica();
          partition.healedAt = Date.now();
          throw err;
        }
        await sleep(opts.healAfterMs ?? 300);
        partition.primaryExitedBeforeHeal = procs['primary']!.exitStatus !== undefined;
        await b.healReplica();
        partition.healedAt = Date.now();
        const exit = await exitWithin(procs['primary']!, 15_000);
        partition.primaryExit = exit;
        partition.primaryExitAt = exit === undefined ? undefined : Date.now();
        if (exit === undefined) throw new Error('the old primary did not exit within 15 s of the heal');
        log(`      healed the link; the old primary exited ${JSON.stringify(exit)} ${partition.primaryExitAt! - partition.healedAt} ms later`);
      }
    };
    const faultDone = injectFault().catch((err: unknown) => {
      harnessError ??= `fault ${fault}: ${(err as Error).message}`;
    });

    const main = await awaitClient(client, Math.max(1000, clientDeadline - Date.now()), `the client did not exit within ${scenario.clientTimeoutMs} ms`);
    const clientEndedAt = main.endedAt;
    harnessError ??= main.problem;
    await faultDone;
    await watchdog.stop();

    const after = await runFollowUp(bed, scenario, ctx, procs);
    const followUp = after.outcome;
    harnessError ??= after.problem;

    // The backup may log takeover-complete a little after the client resumed.
    if ((crashReport !== undefined || partition !== undefined) && procs['backup'] !== undefined) {
      await waitForAnyLine(procs['backup'], (l) => parseLogLine(l)?.event === 'takeover-complete', 2000, 'takeover-complete').catch(() => undefined);
    }
    if (scenario.clientLink !== undefined) await bed.clearRate('client').catch(() => undefined);

    const pcap = capture ? await capture.stop(100) : undefined;
    const summary = pcap ? summarizeCapture(pcap, bed, port, faultAt) : undefined;
    let speakersAfterFault: Speaker[] = [];
    if (pcap !== undefined && faultAt !== undefined) {
      const after = summarizeCapture({ ...pcap, segments: pcap.segments.filter((s) => s.time * 1000 >= faultAt!) }, bed, port, faultAt);
      speakersAfterFault = [...after.speakers];
    }
    const clientOutcome = outcomeOf(client, clientStartedAt, clientEndedAt);
    let verdict: Verdict;
    try {
      verdict = await scenario.check({ client: clientOutcome, followUp }, ctx);
    } catch (err) {
      verdict = { problems: [`the checker threw: ${(err as Error).stack ?? String(err)}`], facts: {} };
    }
    const buffers = [procs['buffer'], procs['buffer-2']].filter((p): p is HostProcess => p !== undefined);
    const nodeEvents: Record<string, NodeEvent[]> = {};
    for (const name of ['buffer', 'buffer-2', 'primary', 'backup']) if (procs[name]) nodeEvents[name] = nodeEventsOf(procs[name]);
    const exits: Record<string, ExitStatus | null> = {};
    for (const [name, p] of Object.entries(procs)) exits[name] = p.exitStatus ?? null;
    return {
      scenario: scenario.name,
      mode,
      wrapped,
      fault,
      seed,
      clientSeed,
      failureTimeoutMs,
      vip: bed.vip,
      port,
      faultPoint,
      faultAt,
      crash: crashReport,
      bufferRestart,
      partition,
      backupJoin,
      client: clientOutcome,
      followUp,
      verdict,
      takeover: takeoverTimesOf(buffers, procs['primary'], procs['backup']),
      nodeEvents,
      exits,
      capture: summary,
      speakersAfterFault,
      logs: logsOf(),
      stalls,
      harnessError,
    };
  } finally {
    await capture?.stop(0).catch(() => undefined);
    await bed.destroy();
    temps.destroySync();
  }
}

/** {@link takeoverTimes} over every buffer process of the run (their verdicts together, the first one detection). */
function takeoverTimesOf(buffers: readonly HostProcess[], primary: HostProcess | undefined, backup: HostProcess | undefined): TakeoverTimes {
  const base = takeoverTimes(buffers[0], primary, backup);
  const verdicts = buffers.flatMap((b, i) => (i === 0 ? base : takeoverTimes(b, undefined, undefined)).bufferVerdicts ?? []).sort((a, b) => a - b);
  return verdicts.length === 0 ? base : { ...base, bufferDetected: verdicts[0], bufferVerdicts: verdicts };
}

/** Host roles that spoke for the VIP, in order, by run: `primary` then `backup` when one spoke at a time. */
export function speakerOrder(r: ScenarioReport): Array<HostRole | string> {
  return (r.capture?.speakerRuns ?? []).map((s) => s.host ?? s.mac);
}

/**
 * One line per fact of a report, for a test's output or a failure message.
 * `verbose` adds the checker's facts, the node events, the stall snapshots
 * and the segments around the fault.
 */
export function describeScenario(r: ScenarioReport, opts: { verbose?: boolean } = {}): string {
  const lines: string[] = [];
  const at = (t: number | undefined | null): string =>
    t == null ? '-' : r.faultAt === undefined ? new Date(t).toISOString() : `${(t - r.faultAt).toFixed(1)} ms after the fault`;
  const point = r.faultPoint === null ? 'none' : r.faultPoint.by === 'progress' ? `${(r.faultPoint.fraction * 100).toFixed(1)}% progress` : `${r.faultPoint.ms} ms`;
  lines.push(`${r.scenario}: mode=${r.mode ?? 'none'} fault=${r.fault} at ${point} seed=${r.seed} (FTCP_E2E_SEED=${r.seed}) port=${r.port} failure timeout ${r.failureTimeoutMs} ms`);
  if (r.faultAt !== undefined) lines.push(`fault injected at ${new Date(r.faultAt).toISOString()}`);
  if (r.bufferRestart) {
    const b = r.bufferRestart;
    lines.push(`buffer: killed, gone ${b.deadAt - b.killedAt} ms later, restarted ${at(b.restartedAt)}, ready ${at(b.readyAt)}`);
  }
  if (r.backupJoin) {
    const j = r.backupJoin;
    lines.push(
      `late backup: due at ${(j.fraction * 100).toFixed(1)}% progress, started ${at(j.startedAt)} at ${((j.startedAtProgress ?? NaN) * 100).toFixed(1)}%, ready ${at(j.readyAt)}, caught up ${at(j.caughtUpAt)} ` +
        `(log head ${j.headLsnAtJoin ?? '-'}, ${j.callsAtJoin ?? '-'} calls at join; last seen ${JSON.stringify(j.lastSeen ?? null).slice(0, 400)})`,
    );
  }
  if (r.partition) {
    const p = r.partition;
    lines.push(`partition: healed ${at(p.healedAt)}${p.primaryExitedBeforeHeal === true ? ' (the old primary had exited before)' : ''}; old primary exit ${JSON.stringify(p.primaryExit ?? null)} ${at(p.primaryExitAt)}`);
  }
  if (r.client) {
    const c = r.client;
    lines.push(`client: exit ${JSON.stringify(c.exit ?? null)} after ${c.endedAt !== undefined ? (c.endedAt - c.startedAt).toFixed(0) : '-'} ms: ${c.command}`);
    const tail = [...c.stderr.slice(-5), ...c.stdout.filter((l) => !l.includes('"progress"')).slice(-3)];
    for (const l of tail) lines.push(`  client| ${l.slice(0, 600)}`);
  }
  if (r.followUp) lines.push(`follow-up: exit ${JSON.stringify(r.followUp.exit ?? null)}: ${r.followUp.command}`);
  if (r.verdict) {
    lines.push(`verdict: ${r.verdict.problems.length === 0 ? 'ok' : `${r.verdict.problems.length} problem(s)`}`);
    for (const p of r.verdict.problems) lines.push(`  PROBLEM: ${p}`);
    if (opts.verbose === true) lines.push(`  facts: ${JSON.stringify(r.verdict.facts)}`);
  }
  const t = r.takeover;
  if (t.bufferDetected !== undefined && (r.faultAt === undefined || t.bufferDetected < r.faultAt)) {
    lines.push(
      `FALSE DETECTION: the buffer declared the primary failed ${r.faultAt === undefined ? 'with no fault injected' : `${(r.faultAt - t.bufferDetected).toFixed(0)} ms before the fault`} ` +
        `(failure timeout ${r.failureTimeoutMs} ms; FTCP_E2E_FAILURE_TIMEOUT_MS overrides it)`,
    );
  }
  lines.push(
    `takeover: primary quiet ${at(t.primaryQuiet)}, resumed ${at(t.primaryResumed)}, stepped down ${at(t.primarySteppedDown)}; buffer detected ${at(t.bufferDetected)}; ` +
      `failure-detected ${at(t.failureDetected)}; promoted ${at(t.promoted)}; vip-moved ${at(t.vipMoved)}; takeover-complete ${at(t.takeoverComplete)} ${t.complete ? JSON.stringify(t.complete) : ''}`,
  );
  lines.push(`exits: ${Object.entries(r.exits).map(([n, s]) => `${n}=${s === null ? 'running' : JSON.stringify(s)}`).join(' ')}`);
  if (r.capture) {
    const c = r.capture;
    lines.push(
      `capture: ${c.packets} packets, ${c.connections} connection(s), ${c.fromServer} from the VIP, ${c.toServer} to it; client FIN at ${at(c.clientFinAt)}; ` +
        `server RSTs ${c.serverRsts.length}${c.serverRsts.length > 0 ? ` (${c.serverRsts.slice(0, 5).map(at).join(', ')})` : ''}, after the client's FIN ${c.serverRstsAfterClientFin.length}, server FINs before the client's ${c.serverFinsBeforeClientFin.length}; ` +
        `wire gap ${c.wireGapMs.toFixed(1)} ms from ${at(c.wireGapAt)}; first server segment after the fault ${at(c.firstServerSegmentAfterCrash)} ` +
        `(${c.serverSegmentsAfterCrash} after); client retransmissions after the fault ${c.clientRetransmitsAfterCrash}`,
    );
    lines.push(`speaker runs: ${c.speakerRuns.map((s) => `${s.host ?? s.mac} ${s.segments} segs ${at(s.first)} .. ${at(s.last)}`).join('; ')}`);
  }
  if (opts.verbose === true) {
    for (const [name, evs] of Object.entries(r.nodeEvents)) {
      const shown = evs.filter((e) => e.event !== 'listening').slice(0, 30);
      if (shown.length > 0) lines.push(`${name} events: ${shown.map((e) => `${e.event}@${at(e.t)}${e.fields['level'] === 'error' ? ` ${JSON.stringify(e.fields).slice(0, 300)}` : ''}`).join('; ')}`);
    }
    if (r.capture && r.capture.interleaved.length > 0) {
      lines.push('segments where a host spoke again after another one had (client capture):');
      for (const l of r.capture.interleaved) lines.push(`  ${l}`);
    }
    if (r.capture && r.capture.aroundCrash.length > 0) {
      lines.push('segments around the fault (client capture):');
      for (const l of r.capture.aroundCrash) lines.push(`  ${l}`);
    }
    for (const st of r.stalls) {
      lines.push(`stall snapshot at ${at(st.at)} (client progress ${st.received}):`);
      for (const [label, text] of Object.entries(st.outputs)) lines.push(`  [${label}]\n${text.trim().replace(/^/gm, '    ')}`);
    }
  }
  if (r.harnessError) lines.push(`harness: ${r.harnessError}`);
  return lines.join('\n');
}

/** The last `n` lines of each process's output, headed by its name. */
export function scenarioLogs(r: { readonly logs: Readonly<Record<string, readonly string[]>> }, n = 60): string {
  return Object.entries(r.logs)
    .map(([name, lines]) => `--- ${name} (${lines.length} lines, last ${Math.min(n, lines.length)})\n${lines.slice(-n).join('\n')}`)
    .join('\n');
}
