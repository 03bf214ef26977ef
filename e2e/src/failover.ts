/**
 * The failover scenario of issue 5 with the echo server (native/echod.c)
 * and its checking client (tools/echo-client.ts): a bed, `ftcp buffer
 * serve` on the backup's end of the replica link, `ftcp primary` wrapping
 * echod, `ftcp backup --mode hot|cold` following it, a client streaming
 * through the VIP, and a fail-stop crash of the primary host at a random
 * point of the stream. Everything the test asserts on, and everything a
 * person needs when it fails (each process's log, the client's events, a
 * summary of a capture in the client's namespace), comes back in one
 * {@link FailoverReport}.
 *
 * The crash point is drawn from a seeded PRNG: the seed is printed before
 * anything starts, and `FTCP_E2E_SEED=<seed>` replays the same crash point
 * and the same client bytes. The point is a number of echoed bytes, not a
 * time, so it lands mid-stream whatever the throughput.
 *
 * Every wait is bounded, and the bed is destroyed on every path out (the
 * buffer's data directory removed with it). The machinery is scenario.ts's
 * (any server, any client, any fault); this module keeps the echo case's
 * own options and report.
 */
import { type BackupMode, type CaptureSummary, type StallSnapshot, type TakeoverTimes } from './harness.js';
import type { CrashReport } from './testbed.js';
import { runScenario, type ScenarioOptions } from './scenario.js';
import { echoScenario } from './scenarios.js';

export {
  mulberry32,
  scenarioSeed,
  summarizeCapture,
  type BackupMode,
  type CaptureSummary,
  type Speaker,
  type StallSnapshot,
  type TakeoverTimes,
} from './harness.js';

/** Options of {@link runFailover}; every field has a default. */
export interface FailoverOptions {
  /**
   * The backup's mode, or null for no backup at all (then no crash either:
   * the wrapped server alone, as a baseline). Default `hot`.
   */
  readonly mode?: BackupMode | null;
  /**
   * Run echod under `ftcp primary` with a buffer (default), or bare in the
   * primary's namespace with no ftcp at all (then no backup and no crash).
   */
  readonly wrapped?: boolean;
  /** Crash the primary host mid-stream; default true when there is a backup. */
  readonly crash?: boolean;
  /** Bytes each way; default 20 MiB. */
  readonly bytes?: number;
  /** The client's sending rate in Mbit/s; default 40 (20 MiB in about 4 s). Null: unpaced. */
  readonly rateMbit?: number | null;
  /** The PRNG seed; default `FTCP_E2E_SEED` from the environment, else random. */
  readonly seed?: number;
  /** The crash lands once this fraction of the bytes has been echoed, drawn uniformly; default [0.2, 0.8]. */
  readonly crashWindow?: readonly [number, number];
  /** The buffer's heartbeat probe interval, ms; default 10. */
  readonly probeIntervalMs?: number;
  /** The buffer's (and the primary's) failure timeout, ms; default 30. */
  readonly failureTimeoutMs?: number;
  /** The primary's `--ack` strategy; default the command's own (eager). */
  readonly ack?: ScenarioOptions['ack'];
  /** Longest the client may take in all, ms; default 60 000. */
  readonly clientTimeoutMs?: number;
  /**
   * When the client reports no progress for this long, ms, snapshot
   * `ss -tin` in every live host and `ftcp status --json` into
   * {@link FailoverReport.stalls} (at most three times); default 3000.
   */
  readonly stallMs?: number;
  /** Capture in the client's namespace; default true. */
  readonly capture?: boolean;
  /** A file for the client's arrival trace (CSV `t_ms,received`, see tools/echo-client.ts), for plots. */
  readonly clientTrace?: string;
  /** Where progress lines go (the seed among them); default console.log. */
  readonly log?: (line: string) => void;
}

/** The client's `done` event (tools/echo-client.ts). */
export interface EchoClientDone {
  readonly ev: 'done';
  readonly t: number;
  readonly sent: number;
  readonly received: number;
  readonly sha256Sent: string;
  readonly sha256Received: string;
  readonly ok: boolean;
  readonly mismatchAt: number | null;
  /** Longest time between two consecutive received chunks, ms. */
  readonly maxGapMs: number;
  /** Arrival of the chunk before the longest gap, ms since the epoch. */
  readonly gapAt: number | null;
  /** Arrival of the chunk after it. */
  readonly gapEnd: number | null;
  /** Bytes received when the gap began. */
  readonly gapOffset: number | null;
  readonly gaps: ReadonlyArray<{ ms: number; at: number; end: number; offset: number }>;
  readonly firstByteAt: number | null;
  readonly lastByteAt: number | null;
  /** From connect to done, ms. */
  readonly ms: number;
}

/** The client's `error` event. */
export interface EchoClientError {
  readonly ev: 'error';
  readonly t: number;
  readonly code: string;
  readonly message: string;
  readonly sent: number;
  readonly received: number;
}

/** Everything {@link runFailover} saw. */
export interface FailoverReport {
  readonly mode: BackupMode | null;
  readonly wrapped: boolean;
  readonly seed: number;
  readonly vip: string;
  readonly port: number;
  readonly bytes: number;
  readonly rateMbit: number | null;
  /** Echoed bytes at which the crash was due, and the fraction it is of {@link FailoverReport.bytes}. */
  readonly crashAtBytes: number | null;
  readonly crashFraction: number | null;
  /** The client's done event, if it got that far. */
  readonly client: EchoClientDone | undefined;
  /** The client's error event, if it had one. */
  readonly clientError: EchoClientError | undefined;
  /** How the client process ended. */
  readonly clientExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly crash: CrashReport | undefined;
  readonly takeover: TakeoverTimes;
  /** The client-visible gap, ms (the client's longest gap between received chunks). */
  readonly gapMs: number | undefined;
  /** The gap between received chunks that spans the crash cut, ms (often, not always, the longest). */
  readonly crashGapMs: number | undefined;
  /** From the crash cut to the first chunk received after it, ms. */
  readonly resumedAfterCrashMs: number | undefined;
  /** Wall time of the whole client run, ms. */
  readonly clientMs: number | undefined;
  readonly capture: CaptureSummary | undefined;
  /** Output of each process (stdout and stderr lines), for failure messages. */
  readonly logs: Readonly<Record<string, readonly string[]>>;
  /** Snapshots taken while the client made no progress (see {@link FailoverOptions.stallMs}). */
  readonly stalls: readonly StallSnapshot[];
  /** What went wrong in the harness itself (a bounded wait that ran out), if anything. */
  readonly harnessError: string | undefined;
}

/**
 * Runs the scenario once; see the module comment. Throws only when the bed
 * or a process cannot be set up (the message quotes the logs); anything
 * that goes wrong after the client has started is in the report
 * (`clientError`, `harnessError`) for the test to judge. The run itself is
 * {@link runScenario} with {@link echoScenario}; this keeps the echo
 * client's own view (gaps, hashes) in the report's fields.
 */
export async function runFailover(opts: FailoverOptions = {}): Promise<FailoverReport> {
  const wrapped = opts.wrapped ?? true;
  const mode = wrapped ? (opts.mode === undefined ? 'hot' : opts.mode) : null;
  const crash = (opts.crash ?? mode !== null) && mode !== null;
  const bytes = opts.bytes ?? 20 * 1024 * 1024;
  const rateMbit = opts.rateMbit === undefined ? 40 : opts.rateMbit;
  const echo = echoScenario({ bytes, rateMbit, clientTimeoutMs: opts.clientTimeoutMs ?? 60_000, ...(opts.clientTrace !== undefined ? { trace: opts.clientTrace } : {}) });
  const r = await runScenario(echo, {
    mode,
    wrapped,
    fault: crash ? 'crash-primary' : 'none',
    faultWindow: opts.crashWindow ?? [0.2, 0.8],
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    ...(opts.probeIntervalMs !== undefined ? { probeIntervalMs: opts.probeIntervalMs } : {}),
    ...(opts.failureTimeoutMs !== undefined ? { failureTimeoutMs: opts.failureTimeoutMs } : {}),
    ...(opts.ack !== undefined ? { ack: opts.ack } : {}),
    ...(opts.stallMs !== undefined ? { stallMs: opts.stallMs } : {}),
    ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
    ...(opts.log !== undefined ? { log: opts.log } : {}),
  });
  const events = r.client?.events ?? [];
  const done = events.find((e) => e.ev === 'done') as EchoClientDone | undefined;
  const clientError = events.find((e) => e.ev === 'error') as EchoClientError | undefined;
  const crashFraction = r.faultPoint?.by === 'progress' ? r.faultPoint.fraction : null;
  const cutAt = r.crash?.cutAt;
  const crashGap = cutAt === undefined ? undefined : done?.gaps.find((g) => g.at <= cutAt && g.end >= cutAt);
  return {
    mode,
    wrapped,
    seed: r.seed,
    vip: r.vip,
    port: r.port,
    bytes,
    rateMbit,
    crashAtBytes: crashFraction === null ? null : Math.floor(bytes * crashFraction),
    crashFraction,
    client: done,
    clientError,
    clientExit: r.client?.exit,
    crash: r.crash,
    takeover: r.takeover,
    gapMs: done?.maxGapMs,
    crashGapMs: crashGap?.ms,
    resumedAfterCrashMs: crashGap !== undefined && cutAt !== undefined ? crashGap.end - cutAt : undefined,
    clientMs: done?.ms,
    capture: r.capture,
    logs: r.logs,
    stalls: r.stalls,
    harnessError: r.harnessError?.replace(/^fault crash-primary: /, 'no crash: '),
  };
}

/**
 * One line per fact of a report, for a test's output or a failure message.
 * `verbose` adds the stall snapshots and the segments around the crash.
 */
export function describeReport(r: FailoverReport, opts: { verbose?: boolean } = {}): string {
  const lines: string[] = [];
  const at = (t: number | undefined | null): string =>
    t == null ? '-' : r.crash === undefined ? new Date(t).toISOString() : `${(t - r.crash.cutAt).toFixed(1)} ms after the crash`;
  lines.push(`mode=${r.mode ?? 'none'} seed=${r.seed} port=${r.port} bytes=${r.bytes} rate=${r.rateMbit ?? 'unpaced'} Mbit/s`);
  if (r.crashAtBytes !== null) lines.push(`crash due at ${r.crashAtBytes} echoed bytes; cut at ${r.crash ? new Date(r.crash.cutAt).toISOString() : '(no crash)'}`);
  if (r.client) {
    const c = r.client;
    lines.push(
      `client: ok=${c.ok} sent=${c.sent} received=${c.received} mismatchAt=${c.mismatchAt} ms=${c.ms.toFixed(0)} ` +
        `maxGap=${c.maxGapMs.toFixed(1)} ms at offset ${c.gapOffset} (${at(c.gapAt)} -> ${at(c.gapEnd)})`,
    );
    lines.push(`client gaps: ${c.gaps.map((g) => `${g.ms.toFixed(1)}ms@${at(g.at)}`).join(', ')}`);
  }
  if (r.clientError) lines.push(`client error: ${r.clientError.code}: ${r.clientError.message} (sent ${r.clientError.sent}, received ${r.clientError.received})`);
  if (r.clientExit) lines.push(`client exit: ${JSON.stringify(r.clientExit)}`);
  const t = r.takeover;
  if (r.crash || t.bufferDetected !== undefined || t.primarySteppedDown !== undefined) {
    if (!r.crash) lines.push('NO CRASH, yet the buffer declared a failure:');
    lines.push(
      `takeover: primary stepped down ${at(t.primarySteppedDown)}; buffer detected ${at(t.bufferDetected)}; failure-detected ${at(t.failureDetected)}; promoted ${at(t.promoted)}; ` +
        `vip-moved ${at(t.vipMoved)}; takeover-complete ${at(t.takeoverComplete)} ${t.complete ? JSON.stringify(t.complete) : ''}`,
    );
  }
  if (r.capture) {
    const c = r.capture;
    lines.push(
      `capture: ${c.packets} packets, ${c.fromServer} from the VIP, ${c.toServer} to it; client FIN at ${at(c.clientFinAt)}; ` +
        `server RSTs ${c.serverRsts.length}${c.serverRsts.length > 0 ? ` (${c.serverRsts.map(at).join(', ')})` : ''}, server FINs before the client's ${c.serverFinsBeforeClientFin.length}; ` +
        `wire gap ${c.wireGapMs.toFixed(1)} ms from ${at(c.wireGapAt)}; first server segment after the crash ${at(c.firstServerSegmentAfterCrash)} ` +
        `(${c.serverSegmentsAfterCrash} after); client retransmissions after the crash ${c.clientRetransmitsAfterCrash}`,
    );
    lines.push(`speakers: ${c.speakers.map((s) => `${s.host ?? s.mac} ${s.segments} segs ${at(s.first)} .. ${at(s.last)}`).join('; ')}`);
  }
  if (opts.verbose === true && r.capture && r.capture.aroundCrash.length > 0) {
    lines.push('segments around the crash (client capture):');
    for (const l of r.capture.aroundCrash) lines.push(`  ${l}`);
  }
  for (const st of opts.verbose === true ? r.stalls : []) {
    lines.push(`stall snapshot at ${at(st.at)} (client at sent=${st.sent} received=${st.received}):`);
    for (const [label, text] of Object.entries(st.outputs)) lines.push(`  [${label}]\n${text.trim().replace(/^/gm, '    ')}`);
  }
  if (r.harnessError) lines.push(`harness: ${r.harnessError}`);
  return lines.join('\n');
}

/** The last `n` lines of each process's output, headed by its name. */
export function reportLogs(r: FailoverReport, n = 60): string {
  return Object.entries(r.logs)
    .map(([name, lines]) => `--- ${name} (${lines.length} lines, last ${Math.min(n, lines.length)})\n${lines.slice(-n).join('\n')}`)
    .join('\n');
}
