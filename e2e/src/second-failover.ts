/**
 * Issue 5: "After promotion the new primary keeps serving old and new
 * connections and keeps recording, so a new backup can join later." Two
 * fail-stop crashes during one echo stream, each masked by a different
 * backup:
 *
 * 1. The bed has a spare host and a replica network (testbed.ts); the
 *    stable buffer runs on the spare, so it outlives both crashes. `ftcp
 *    primary` (node `primary-a`) serves on the primary host, a hot `ftcp
 *    backup` (node `backup-b`, "backup 1") follows on the backup host.
 * 2. At a seeded fraction of the client's stream the primary host dies
 *    fail-stop; backup 1 takes over (epoch 2) and from then on records.
 * 3. A second hot backup (node `backup-c`, "backup 2") with a fresh server
 *    starts on the spare. It replays from LSN 0: the old primary's records,
 *    then the records backup 1 made as the primary (its streams went live at
 *    the old primary's last call number + 1). It must catch up: consume every
 *    record and play every call the log held once it was ready.
 * 4. At a second seeded fraction (not before backup 2 caught up) the backup
 *    host, now the primary, dies fail-stop too; backup 2 takes over (epoch 3).
 * 5. The client's one connection must come through both intact; then a
 *    follow-up connection, served by backup 2 alone.
 *
 * With `earlierConnection`, a short echo connection runs to its end before
 * the long one, as any server in service has served clients before: backup
 * 2's replay of the server from its start must go through that connection
 * too, after backup 1 (hot) consumed its records and the buffer could have
 * collected them.
 *
 * The seed is printed first; `FTCP_E2E_SEED=<seed>` replays both crash
 * points and the client's bytes. Every wait is bounded; the bed and every
 * temporary directory are removed on every path out.
 */
import { BufferWatch, type CatchUp } from './buffer-watch.js';
import type { Capture } from './capture.js';
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
  type CaptureSummary,
  type StallSnapshot,
  type TakeoverTimes,
} from './harness.js';
import { nextPort } from './names.js';
import type { ExitStatus, HostProcess } from './process.js';
import { awaitClient, outcomeOf, runFollowUp, TempDirs, testFailureTimeoutMs, type ClientOutcome, type ScenarioContext, type Verdict } from './scenario.js';
import { echoScenario } from './scenarios.js';
import { Testbed, type CrashReport, type HostRole } from './testbed.js';
import { FTCP_BIN } from './tool-paths.js';

const MiB = 1024 * 1024;

/** Options of {@link runSecondFailover}; every field has a default. */
export interface SecondFailoverOptions {
  /** Bytes each way of the client's one connection; default 40 MiB. */
  readonly bytes?: number;
  /** The client's pace, Mbit/s; default 24 (40 MiB in about 14 s: room for a takeover, a late start and a catch-up between the crashes). */
  readonly rateMbit?: number;
  /** Bytes each way of the follow-up connection after both crashes; default 1 MiB. */
  readonly followUpBytes?: number;
  /**
   * Before the long connection, a short echo connection of this many bytes
   * each way, run to its end (see the module comment); default none.
   */
  readonly earlierConnectionBytes?: number;
  /** Where in the stream the primary dies, as fractions of the client's progress; default [0.1, 0.2]. */
  readonly firstCrashWindow?: readonly [number, number];
  /** Where backup 1, promoted, dies; default [0.65, 0.85]. The crash also waits for backup 2 to catch up. */
  readonly secondCrashWindow?: readonly [number, number];
  /** The PRNG seed; default `FTCP_E2E_SEED`, else random. */
  readonly seed?: number;
  /** The buffer's probe interval, ms; default 10. */
  readonly probeIntervalMs?: number;
  /** The buffer's and the nodes' failure timeout, ms; default as {@link testFailureTimeoutMs}. */
  readonly failureTimeoutMs?: number;
  /** Where progress lines go (the seed among them); default console.log. */
  readonly log?: (line: string) => void;
}

/** Backup 2's late start. */
export interface SecondBackupJoin {
  readonly startedAt: number;
  /** The client's progress when it started. */
  readonly startedAtProgress: number | undefined;
  /** When `ftcp backup` printed `ready`, or undefined if it never did. */
  readonly readyAt: number | undefined;
  /** What the buffer's status said of its catch-up. */
  readonly catchUp: CatchUp | undefined;
}

/** A `primary-failed` of the buffer: whom it declared failed, in which epoch, when. */
export interface Detection {
  readonly node: string;
  readonly epoch: number;
  readonly t: number | undefined;
}

/** Everything {@link runSecondFailover} saw. */
export interface SecondFailoverReport {
  readonly seed: number;
  readonly clientSeed: number;
  readonly port: number;
  readonly failureTimeoutMs: number;
  readonly bytes: number;
  /** The seeded crash points, as fractions of the client's progress. */
  readonly firstCrashAt: number;
  readonly secondCrashAt: number;
  readonly firstCrash: CrashReport | undefined;
  /** The client's progress when each crash came. */
  readonly firstCrashProgress: number | undefined;
  readonly secondCrash: CrashReport | undefined;
  readonly secondCrashProgress: number | undefined;
  /** Backup 1's takeover (and, as `primarySteppedDown`/`primaryQuiet`, the old primary's). */
  readonly firstTakeover: TakeoverTimes;
  /** Backup 2's takeover (`primaryQuiet` etc. are backup 1's as the primary). */
  readonly secondTakeover: TakeoverTimes;
  readonly join: SecondBackupJoin | undefined;
  /** Every failure the buffer declared, in order. */
  readonly detections: readonly Detection[];
  /** The earlier connection's client, when one ran. */
  readonly earlier: ClientOutcome | undefined;
  readonly client: ClientOutcome | undefined;
  readonly followUp: ClientOutcome | undefined;
  /** The checker's judgement of the long connection, the follow-up and the earlier one. */
  readonly verdict: Verdict | undefined;
  readonly capture: CaptureSummary | undefined;
  /** How each process ended, or null if it was still running when the run ended. */
  readonly exits: Readonly<Record<string, ExitStatus | null>>;
  /** Each process's output (stdout and stderr lines), for failure messages. */
  readonly logs: Readonly<Record<string, readonly string[]>>;
  readonly stalls: readonly StallSnapshot[];
  /** What went wrong in the harness (a bounded wait that ran out, a backup that never caught up), if anything. */
  readonly harnessError: string | undefined;
}

/** The earlier connection: an unpaced echo of `bytes` each way, of the run's client seed (so it replays). */
function earlierScenario(bytes: number): ReturnType<typeof echoScenario> {
  return echoScenario({ bytes, rateMbit: null, clientTimeoutMs: 25_000 });
}

/** The buffer's `primary-failed` events. */
function detectionsOf(buffer: HostProcess | undefined): Detection[] {
  const out: Detection[] = [];
  for (const line of buffer ? allLines(buffer) : []) {
    const e = parseLogLine(line);
    if (e?.event === 'primary-failed') out.push({ node: String(e.fields['node']), epoch: Number(e.fields['epoch']), t: e.time });
  }
  return out;
}

/** Runs the two crashes once; see the module comment. Throws only when the bed or the first processes cannot be set up. */
export async function runSecondFailover(opts: SecondFailoverOptions = {}): Promise<SecondFailoverReport> {
  const bytes = opts.bytes ?? 40 * MiB;
  const seed = opts.seed ?? scenarioSeed();
  const probeIntervalMs = opts.probeIntervalMs ?? 10;
  const failureTimeoutMs = testFailureTimeoutMs(opts.failureTimeoutMs);
  const log = opts.log ?? ((l: string) => console.log(l));
  const rand = mulberry32(seed);
  const draw = (w: readonly [number, number]): number => w[0] + (w[1] - w[0]) * rand();
  // Same order as runScenario: the fault point first, then the client's seed.
  const firstCrashAt = draw(opts.firstCrashWindow ?? [0.1, 0.2]);
  const clientSeed = Math.floor(rand() * 0xffffffff) + 1;
  const secondCrashAt = draw(opts.secondCrashWindow ?? [0.65, 0.85]);
  log(
    `      echo ${bytes} bytes: crash the primary at ${(firstCrashAt * 100).toFixed(1)}%, the promoted backup at ${(secondCrashAt * 100).toFixed(1)}% ` +
      `of the client's progress; seed=${seed} (replay: FTCP_E2E_SEED=${seed})`,
  );

  const scenario = echoScenario({ bytes, rateMbit: opts.rateMbit ?? 24, followUpBytes: opts.followUpBytes ?? MiB, clientTimeoutMs: 60_000 });
  const temps = new TempDirs();
  const dataDir = temps.make('ftcp-e2e-buffer-');
  const dir = temps.make('ftcp-e2e-second-failover-');
  let bed: Testbed;
  try {
    bed = await Testbed.create({ spare: true });
  } catch (err) {
    temps.destroySync();
    throw err;
  }
  const port = nextPort();
  const ctx: ScenarioContext = { bed, vip: bed.vip, port, dir, seed, clientSeed, mode: 'hot', wrapped: true };
  // The buffer on the spare's end of the replica network: every node reaches it there, and it outlives both crashes.
  const endpoint = `tcp://${bed.host('spare').replicaNetAddr!}:${nextPort()}`;
  const procs: Record<string, HostProcess> = {};
  const stalls: StallSnapshot[] = [];
  let capture: Capture | undefined;
  let firstCrash: CrashReport | undefined;
  let secondCrash: CrashReport | undefined;
  let firstCrashProgress: number | undefined;
  let secondCrashProgress: number | undefined;
  let joinReport: { -readonly [K in keyof SecondBackupJoin]: SecondBackupJoin[K] } | undefined;
  let harnessError: string | undefined;
  const logsOf = (): Record<string, string[]> =>
    Object.fromEntries(Object.entries(procs).map(([name, p]) => [name, [...p.stdoutLines.map((l) => `out ${l}`), ...p.stderrLines.map((l) => `err ${l}`)]]));
  const server = scenario.server(ctx);
  const node = (role: HostRole, name: string, args: readonly string[]): HostProcess =>
    bed.spawn(role, FTCP_BIN, [
      ...args, '--service', `${bed.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--node', name,
      '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info', '--', server.cmd, ...server.args,
    ]);
  try {
    try {
      procs['buffer'] = bed.spawn('spare', FTCP_BIN, [
        'buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory',
        '--probe-interval', String(probeIntervalMs), '--failure-timeout', String(failureTimeoutMs),
        // `debug` shows what the buffer collects (diagnosis only: it costs CPU).
        '--log-level', process.env['FTCP_E2E_BUFFER_LOG_LEVEL'] ?? 'info',
      ]);
      await waitForAnyLine(procs['buffer'], (l) => l.includes('"ready"'), 15_000, 'buffer ready');
      procs['primary'] = node('primary', 'primary-a', ['primary']);
      await waitForAnyLine(procs['primary'], (l) => l.includes('"ready"'), 20_000, 'primary ready');
      await scenario.ready(ctx, procs['primary']);
      procs['backup-1'] = node('backup', 'backup-b', ['backup', '--mode', 'hot']);
      await waitForAnyLine(procs['backup-1'], (l) => l.includes('"ready"'), 20_000, 'backup 1 (hot) ready');
    } catch (err) {
      const logs = Object.entries(logsOf())
        .map(([name, lines]) => `--- ${name}\n${lines.slice(-40).join('\n')}`)
        .join('\n');
      throw new Error(`second failover setup failed (seed ${seed}): ${(err as Error).message}\n${logs}`, { cause: err });
    }

    capture = await bed.capture('client', { filter: `tcp port ${port}` });
    let earlier: ClientOutcome | undefined;
    if (opts.earlierConnectionBytes !== undefined) {
      const spec = earlierScenario(opts.earlierConnectionBytes).client(ctx);
      const startedAt = Date.now();
      const p = bed.spawn('client', spec.cmd, spec.args);
      procs['earlier'] = p;
      const exit = await exitWithin(p, 30_000);
      if (exit === undefined) await p.stop('SIGKILL', 2000).catch(() => undefined);
      earlier = outcomeOf(p, startedAt, exit === undefined ? undefined : Date.now());
      log(`      an earlier connection of ${opts.earlierConnectionBytes} bytes each way ended ${JSON.stringify(exit ?? null)}`);
    }
    const clientSpec = scenario.client(ctx);
    const clientStartedAt = Date.now();
    const client = bed.spawn('client', clientSpec.cmd, clientSpec.args);
    procs['client'] = client;
    const clientDeadline = clientStartedAt + scenario.clientTimeoutMs;
    const progressOf = (): number => scenario.progress?.(client, ctx) ?? 0;
    const watchdog = watchStalls(bed, client, undefined, 3000, stalls, () => Math.round(progressOf() * 1e6));

    const waitForProgress = async (fraction: number, what: string): Promise<void> => {
      for (;;) {
        if (progressOf() >= fraction) return;
        if (client.exitStatus !== undefined) throw new Error(`the client ended (${JSON.stringify(client.exitStatus)}) before ${what} (progress ${progressOf().toFixed(3)})`);
        if (Date.now() >= clientDeadline) throw new Error(`${what} was not reached within ${scenario.clientTimeoutMs} ms (progress ${progressOf().toFixed(3)})`);
        await sleep(5);
      }
    };

    const faults = async (): Promise<void> => {
      await waitForProgress(firstCrashAt, 'the first crash point');
      firstCrashProgress = progressOf();
      firstCrash = await bed.crash('primary');
      log(`      crashed the primary at ${(firstCrashProgress * 100).toFixed(1)}% (killed ${firstCrash.killedPids.length} processes)`);
      await waitForAnyLine(procs['backup-1']!, (l) => parseLogLine(l)?.event === 'takeover-complete', 15_000, 'backup 1 taking over');

      const startedAt = Date.now();
      joinReport = { startedAt, startedAtProgress: progressOf(), readyAt: undefined, catchUp: undefined };
      const j = joinReport;
      const watch = BufferWatch.start(bed, 'spare', endpoint);
      try {
        procs['backup-2'] = node('spare', 'backup-c', ['backup', '--mode', 'hot']);
        await waitForAnyLine(procs['backup-2'], (l) => l.includes('"ready"'), 20_000, 'backup 2 (hot) ready');
        j.readyAt = Date.now();
        log(`      started backup 2 on the spare at ${((j.startedAtProgress ?? 0) * 100).toFixed(1)}%; ready ${j.readyAt - startedAt} ms later`);
        const b2 = procs['backup-2'];
        j.catchUp = await watch.waitForCatchUp('backup-c', 'hot', j.readyAt, Math.max(0, clientDeadline - Date.now()), () => client.exitStatus !== undefined || b2.exitStatus !== undefined);
      } finally {
        await watch.stop();
      }
      const c = j.catchUp;
      if (c.caughtUp === undefined) {
        const why = c.promotedFirst !== undefined ? 'it was promoted first (a failure declared with no fault yet: a false detection)' : `last seen ${JSON.stringify({ backups: c.last?.backups, nodes: c.last?.nodes, firstLsn: c.last?.firstLsn, headLsn: c.last?.headLsn, calls: c.last?.calls })}`;
        throw new Error(`backup 2 did not catch up from the log before the client ended (${procs['backup-2']!.exitStatus ? `it exited ${JSON.stringify(procs['backup-2']!.exitStatus)}; ` : ''}${why})`);
      }
      log(`      backup 2 caught up ${c.caughtUp.t - j.readyAt!} ms after ready (log head ${c.atJoin?.headLsn}, ${c.atJoin?.calls} calls at join), at ${(progressOf() * 100).toFixed(1)}%`);

      await waitForProgress(secondCrashAt, 'the second crash point');
      secondCrashProgress = progressOf();
      secondCrash = await bed.crash('backup');
      log(`      crashed the promoted backup 1 at ${(secondCrashProgress * 100).toFixed(1)}% (killed ${secondCrash.killedPids.length} processes)`);
      await waitForAnyLine(procs['backup-2'], (l) => parseLogLine(l)?.event === 'takeover-complete', 15_000, 'backup 2 taking over');
    };
    const faultsDone = faults().catch((err: unknown) => {
      harnessError ??= (err as Error).message;
    });

    const main = await awaitClient(client, Math.max(1000, clientDeadline - Date.now()), `the client did not exit within ${scenario.clientTimeoutMs} ms`);
    const clientEndedAt = main.endedAt;
    harnessError ??= main.problem;
    await faultsDone;
    await watchdog.stop();

    const after = await runFollowUp(bed, scenario, ctx, procs);
    const followUp = after.outcome;
    harnessError ??= after.problem;

    const pcap = await capture.stop(100);
    const summary = summarizeCapture(pcap, bed, port, firstCrash?.cutAt);
    const clientOutcome = outcomeOf(client, clientStartedAt, clientEndedAt);
    let verdict: Verdict;
    try {
      verdict = await scenario.check({ client: clientOutcome, followUp }, ctx);
      if (earlier !== undefined) {
        const v = await earlierScenario(opts.earlierConnectionBytes!).check({ client: earlier, followUp: undefined }, ctx);
        verdict = { problems: [...verdict.problems, ...v.problems.map((p) => `the earlier connection: ${p}`)], facts: verdict.facts };
      }
    } catch (err) {
      verdict = { problems: [`the checker threw: ${(err as Error).stack ?? String(err)}`], facts: {} };
    }
    const exits: Record<string, ExitStatus | null> = {};
    for (const [name, p] of Object.entries(procs)) exits[name] = p.exitStatus ?? null;
    const detections = detectionsOf(procs['buffer']);
    const first = takeoverTimes(procs['buffer'], procs['primary'], procs['backup-1']);
    const second = takeoverTimes(undefined, procs['backup-1'], procs['backup-2']);
    const secondDetected = detections.find((d) => d.node === 'backup-b')?.t;
    return {
      seed,
      clientSeed,
      port,
      failureTimeoutMs,
      bytes,
      firstCrashAt,
      secondCrashAt,
      firstCrash,
      firstCrashProgress,
      secondCrash,
      secondCrashProgress,
      firstTakeover: first,
      secondTakeover: secondDetected === undefined ? second : { ...second, bufferDetected: secondDetected },
      join: joinReport,
      detections,
      earlier,
      client: clientOutcome,
      followUp,
      verdict,
      capture: summary,
      exits,
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

/** Host roles that spoke for the VIP, in order, by runs of segments: `primary`, `backup`, `spare` when one spoke at a time. */
export function secondFailoverSpeakers(r: SecondFailoverReport): string[] {
  return (r.capture?.speakerRuns ?? []).map((s) => s.host ?? s.mac);
}

/** One line per fact of a report; `verbose` adds the buffer's detections, the node events and the segments around the first crash. */
export function describeSecondFailover(r: SecondFailoverReport, opts: { verbose?: boolean } = {}): string {
  const t0 = r.firstCrash?.cutAt;
  const at = (t: number | undefined | null): string => (t == null ? '-' : t0 === undefined ? new Date(t).toISOString() : `${(t - t0).toFixed(1)} ms`);
  const pct = (f: number | undefined): string => (f === undefined ? '-' : `${(f * 100).toFixed(1)}%`);
  const lines: string[] = [];
  lines.push(
    `second failover: echo ${r.bytes} bytes, seed=${r.seed} (FTCP_E2E_SEED=${r.seed}) port=${r.port} failure timeout ${r.failureTimeoutMs} ms; times below are from the first crash`,
  );
  lines.push(`crash 1 (primary host): due ${pct(r.firstCrashAt)}, came at ${pct(r.firstCrashProgress)}; crash 2 (backup host, promoted): due ${pct(r.secondCrashAt)}, came at ${pct(r.secondCrashProgress)} ${at(r.secondCrash?.cutAt)}`);
  const t1 = r.firstTakeover;
  lines.push(
    `takeover 1 (backup-b): buffer detected ${at(t1.bufferDetected)}, failure-detected ${at(t1.failureDetected)}, promoted ${at(t1.promoted)}, vip-moved ${at(t1.vipMoved)}, ` +
      `takeover-complete ${at(t1.takeoverComplete)} ${t1.complete ? JSON.stringify(t1.complete) : ''}`,
  );
  if (r.join) {
    const c = r.join.catchUp;
    lines.push(
      `backup 2 (backup-c) on the spare: started ${at(r.join.startedAt)} at ${pct(r.join.startedAtProgress)}, ready ${at(r.join.readyAt)}, ` +
        `caught up ${at(c?.caughtUp?.t)} (log at join: head ${c?.atJoin?.headLsn ?? '-'}, first ${c?.atJoin?.firstLsn ?? '-'}, ${c?.atJoin?.calls ?? '-'} calls)` +
        `${c?.promotedFirst ? '; PROMOTED BEFORE IT CAUGHT UP' : ''}; last seen ${JSON.stringify({ backups: c?.last?.backups, nodes: c?.last?.nodes.filter((n) => n.node === 'backup-c') }).slice(0, 500)}`,
    );
  }
  const t2 = r.secondTakeover;
  lines.push(
    `takeover 2 (backup-c): buffer detected ${at(t2.bufferDetected)}, failure-detected ${at(t2.failureDetected)}, promoted ${at(t2.promoted)}, vip-moved ${at(t2.vipMoved)}, ` +
      `takeover-complete ${at(t2.takeoverComplete)} ${t2.complete ? JSON.stringify(t2.complete) : ''}`,
  );
  lines.push(`buffer declared failed: ${r.detections.map((d) => `${d.node} (epoch ${d.epoch}) ${at(d.t)}`).join('; ') || 'nobody'}`);
  if (r.client) {
    const c = r.client;
    lines.push(`client: exit ${JSON.stringify(c.exit ?? null)} after ${c.endedAt !== undefined ? (c.endedAt - c.startedAt).toFixed(0) : '-'} ms, ended ${at(c.endedAt)}`);
    for (const l of [...c.stderr.slice(-5), ...c.stdout.filter((x) => !x.includes('"progress"')).slice(-3)]) lines.push(`  client| ${l.slice(0, 600)}`);
  }
  if (r.earlier) lines.push(`earlier connection: exit ${JSON.stringify(r.earlier.exit ?? null)}, ended ${at(r.earlier.endedAt)}`);
  if (r.followUp) lines.push(`follow-up: exit ${JSON.stringify(r.followUp.exit ?? null)}`);
  if (r.verdict) {
    lines.push(`verdict: ${r.verdict.problems.length === 0 ? 'ok' : `${r.verdict.problems.length} problem(s)`}`);
    for (const p of r.verdict.problems) lines.push(`  PROBLEM: ${p}`);
  }
  lines.push(`exits: ${Object.entries(r.exits).map(([n, s]) => `${n}=${s === null ? 'running' : JSON.stringify(s)}`).join(' ')}`);
  if (r.capture) {
    const c = r.capture;
    lines.push(
      `capture: ${c.packets} packets, ${c.connections} connection(s); server RSTs ${c.serverRsts.length}, server FINs before the client's ${c.serverFinsBeforeClientFin.length}; ` +
        `wire gap ${c.wireGapMs.toFixed(1)} ms from ${at(c.wireGapAt)}`,
    );
    lines.push(`speaker runs: ${c.speakerRuns.map((s) => `${s.host ?? s.mac} ${s.segments} segs ${at(s.first)} .. ${at(s.last)}`).join('; ')}`);
  }
  if (r.harnessError) lines.push(`harness: ${r.harnessError}`);
  if (opts.verbose === true) {
    for (const name of ['buffer', 'primary', 'backup-1', 'backup-2']) {
      const evs = (r.logs[name] ?? [])
        .map((l) => parseLogLine(l.replace(/^(out|err) /, '')))
        .filter((e) => e !== undefined && (e.fields['level'] === 'warn' || e.fields['level'] === 'error' || ['subscribed', 'promoted', 'writer-attached'].includes(e.event)));
      if (evs.length > 0) lines.push(`${name} events: ${evs.slice(0, 40).map((e) => `${e!.event}@${at(e!.time)}${e!.fields['level'] === 'error' ? ` ${JSON.stringify(e!.fields).slice(0, 300)}` : ''}`).join('; ')}`);
    }
    if (r.capture && r.capture.interleaved.length > 0) {
      lines.push('segments where a host spoke again after another one had (client capture):');
      for (const l of r.capture.interleaved) lines.push(`  ${l}`);
    }
    for (const st of r.stalls) {
      lines.push(`stall snapshot at ${at(st.at)} (client progress ${st.received}):`);
      for (const [label, text] of Object.entries(st.outputs)) lines.push(`  [${label}]\n${text.trim().replace(/^/gm, '    ')}`);
    }
  }
  return lines.join('\n');
}
