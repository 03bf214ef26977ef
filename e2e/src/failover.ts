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
 * buffer's data directory removed with it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Capture } from './capture.js';
import { nextPort } from './names.js';
import { TcpFlag, flagString, hasFlag, type PcapCapture } from './pcap.js';
import type { HostProcess } from './process.js';
import { Testbed, type CrashReport, type HostRole } from './testbed.js';
import { ECHOD_BIN, ECHO_CLIENT_TOOL, FTCP_BIN } from './tool-paths.js';

/** How the backup follows the primary (issue 5, "Modes"). */
export type BackupMode = 'hot' | 'cold';

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

/** When the buffer and the backup said what (ms since the epoch), from their logs. */
export interface TakeoverTimes {
  /** The buffer's first `primary-failed` (about any node). */
  readonly bufferDetected?: number;
  /** The primary's `stepping-down`, if it stepped down (a false detection, or a partition). */
  readonly primarySteppedDown?: number;
  readonly failureDetected?: number;
  readonly promoted?: number;
  readonly vipMoved?: number;
  readonly takeoverComplete?: number;
  /** The fields of the backup's `takeover-complete` event (epoch, connections, ms, ...). */
  readonly complete?: Record<string, unknown>;
}

/** Who sent segments from the VIP's port, by source MAC, as the client saw it. */
export interface Speaker {
  readonly mac: string;
  /** Which host owns that MAC, if any. */
  readonly host: HostRole | undefined;
  readonly segments: number;
  /** Capture times, ms since the epoch. */
  readonly first: number;
  readonly last: number;
}

/** A summary of the client-side capture of the service's port. */
export interface CaptureSummary {
  readonly packets: number;
  readonly fromServer: number;
  readonly toServer: number;
  /** The client's first FIN (its own close), ms since the epoch, or null. */
  readonly clientFinAt: number | null;
  /** Times of every RST the server side sent. */
  readonly serverRsts: readonly number[];
  /** Times of every FIN the server side sent before the client's own FIN (or at all, if the client never sent one). */
  readonly serverFinsBeforeClientFin: readonly number[];
  /** Every MAC that spoke for the VIP, in order of first segment. */
  readonly speakers: readonly Speaker[];
  /** Longest time between two data-bearing segments of the server side on the wire, ms, and when it began. */
  readonly wireGapMs: number;
  readonly wireGapAt: number | null;
  /** Server-side segments after the crash cut, and the first one's time. */
  readonly serverSegmentsAfterCrash: number;
  readonly firstServerSegmentAfterCrash: number | null;
  /** Client segments with a sequence number seen before (retransmissions), after the crash. */
  readonly clientRetransmitsAfterCrash: number;
  /**
   * The last 10 segments before the crash and the first 80 after it, one
   * line each: time from the crash, who sent it, flags, sequence and ack
   * numbers relative to each side's ISN, window as sent, payload length.
   */
  readonly aroundCrash: readonly string[];
}

/** What the hosts' sockets and the buffer looked like while the client was stuck. */
export interface StallSnapshot {
  /** When it was taken, ms since the epoch. */
  readonly at: number;
  /** The client's byte counts at its last progress event. */
  readonly sent: number;
  readonly received: number;
  /** Command output (or its error) by label: `ss client`, `ss primary`, `ss backup`, `status`. */
  readonly outputs: Readonly<Record<string, string>>;
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

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed to use: `FTCP_E2E_SEED` if set, else a fresh random one. */
export function scenarioSeed(): number {
  const env = process.env['FTCP_E2E_SEED'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`FTCP_E2E_SEED must be an integer in [0, 2^32), got ${env}`);
    return n;
  }
  return Math.floor(Math.random() * 0x100000000) >>> 0;
}

const TAKEOVER_EVENTS = ['failure-detected', 'promoted', 'vip-moved', 'takeover-complete'] as const;

interface LogEvent {
  readonly event: string;
  readonly time: number | undefined;
  readonly fields: Record<string, unknown>;
}

/** A JSON log line of an ftcp process (`{"t": ISO, "event": ...}`) or a tool's (`{"ev": ..., "t": ms}`). */
function parseLogLine(line: string): LogEvent | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    const event = typeof v['event'] === 'string' ? v['event'] : typeof v['ev'] === 'string' ? v['ev'] : undefined;
    if (event === undefined) return undefined;
    const t = v['t'];
    const time = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : undefined;
    return { event, time: Number.isFinite(time) ? time : undefined, fields: v };
  } catch {
    return undefined;
  }
}

/** Every line of a process, stdout then stderr (each in order). */
function allLines(p: HostProcess): string[] {
  return [...p.stdoutLines, ...p.stderrLines];
}

/**
 * Waits until a line on stdout or stderr passes `test`, the process exits,
 * or `timeoutMs` passes. Polls: the lines are kept by {@link HostProcess}.
 */
async function waitForAnyLine(p: HostProcess, test: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = allLines(p).find(test);
    if (hit !== undefined) return hit;
    if (p.exitStatus !== undefined) {
      throw new Error(`${what}: \`${p.commandLine}\` on ${p.host} exited (${JSON.stringify(p.exitStatus)}) first`);
    }
    if (Date.now() >= until) throw new Error(`${what}: not seen within ${timeoutMs} ms from \`${p.commandLine}\` on ${p.host}`);
    await sleep(10);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves with the exit status, or undefined after `ms`. */
async function exitWithin(p: HostProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  const s = await Promise.race([p.exited, t]);
  clearTimeout(timer);
  return s;
}

function takeoverTimes(buffer: HostProcess | undefined, primary: HostProcess | undefined, backup: HostProcess | undefined): TakeoverTimes {
  const out: { -readonly [K in keyof TakeoverTimes]: TakeoverTimes[K] } = {};
  for (const line of primary ? allLines(primary) : []) {
    const e = parseLogLine(line);
    if (e?.event === 'stepping-down' && out.primarySteppedDown === undefined) out.primarySteppedDown = e.time;
  }
  for (const line of buffer ? allLines(buffer) : []) {
    const e = parseLogLine(line);
    if (e?.event === 'primary-failed' && out.bufferDetected === undefined) out.bufferDetected = e.time;
  }
  const key = { 'failure-detected': 'failureDetected', promoted: 'promoted', 'vip-moved': 'vipMoved', 'takeover-complete': 'takeoverComplete' } as const;
  for (const line of backup ? allLines(backup) : []) {
    const e = parseLogLine(line);
    if (e === undefined || !(TAKEOVER_EVENTS as readonly string[]).includes(e.event)) continue;
    const k = key[e.event as (typeof TAKEOVER_EVENTS)[number]];
    if (out[k] !== undefined) continue;
    out[k] = e.time;
    if (e.event === 'takeover-complete') out.complete = e.fields;
  }
  return out;
}

/**
 * Summarises a client-side capture of the service port: who spoke for the
 * VIP (by MAC) and when, FINs and RSTs of the server side against the
 * client's own close, the longest silence of the server on the wire, and
 * client retransmissions after the crash.
 */
export function summarizeCapture(pcap: PcapCapture, bed: Testbed, port: number, crashAt: number | undefined): CaptureSummary {
  const segs = pcap.segments.filter((s) => s.srcPort === port || s.dstPort === port);
  const fromServer = segs.filter((s) => s.src === bed.vip && s.srcPort === port);
  const toServer = segs.filter((s) => s.dst === bed.vip && s.dstPort === port);
  const ms = (time: number): number => time * 1000;
  const clientFin = toServer.find((s) => hasFlag(s, TcpFlag.FIN));
  const clientFinAt = clientFin ? ms(clientFin.time) : null;
  const macOwner = new Map<string, HostRole>();
  for (const role of ['client', 'primary', 'backup'] as const) macOwner.set(bed.host(role).lanMac, role);
  const speakers = new Map<string, { mac: string; host: HostRole | undefined; segments: number; first: number; last: number }>();
  let wireGapMs = 0;
  let wireGapAt: number | null = null;
  let prev: number | undefined;
  for (const s of fromServer) {
    const t = ms(s.time);
    const mac = s.srcMac ?? '?';
    const sp = speakers.get(mac) ?? { mac, host: macOwner.get(mac), segments: 0, first: t, last: t };
    sp.segments++;
    sp.last = t;
    speakers.set(mac, sp);
    if (s.payloadLength === 0) continue;
    if (prev !== undefined && t - prev > wireGapMs) {
      wireGapMs = t - prev;
      wireGapAt = prev;
    }
    prev = t;
  }
  const afterCrash = crashAt === undefined ? [] : fromServer.filter((s) => ms(s.time) >= crashAt);
  // A client data segment whose sequence number was seen before: a retransmission.
  let clientRetransmitsAfterCrash = 0;
  const seenSeq = new Set<number>();
  for (const s of toServer) {
    if (s.payloadLength === 0) continue;
    if (seenSeq.has(s.seq) && crashAt !== undefined && ms(s.time) >= crashAt) clientRetransmitsAfterCrash++;
    seenSeq.add(s.seq);
  }
  const clientIsn = toServer.find((s) => hasFlag(s, TcpFlag.SYN))?.seq;
  const serverIsn = fromServer.find((s) => hasFlag(s, TcpFlag.SYN))?.seq;
  const rel = (v: number, isn: number | undefined): string => (isn === undefined ? String(v) : String((v - isn) >>> 0));
  const line = (s: (typeof segs)[number]): string => {
    const fromVip = s.src === bed.vip;
    const who = fromVip ? (macOwner.get(s.srcMac ?? '') ?? s.srcMac ?? '?') : 'client';
    const dt = crashAt === undefined ? `${s.time.toFixed(6)}` : `${(ms(s.time) - crashAt).toFixed(1)}ms`;
    const seq = rel(s.seq, fromVip ? serverIsn : clientIsn);
    const ack = rel(s.ack, fromVip ? clientIsn : serverIsn);
    return `${dt} ${who} [${flagString(s.flags)}] seq ${seq} ack ${ack} win ${s.window} len ${s.payloadLength}`;
  };
  let aroundCrash: string[] = [];
  if (crashAt !== undefined) {
    const first = segs.findIndex((s) => ms(s.time) >= crashAt);
    const from = first < 0 ? Math.max(0, segs.length - 10) : Math.max(0, first - 10);
    aroundCrash = segs.slice(from, first < 0 ? segs.length : first + 80).map(line);
  }
  return {
    packets: pcap.packets,
    fromServer: fromServer.length,
    toServer: toServer.length,
    clientFinAt,
    serverRsts: fromServer.filter((s) => hasFlag(s, TcpFlag.RST)).map((s) => ms(s.time)),
    serverFinsBeforeClientFin: fromServer
      .filter((s) => hasFlag(s, TcpFlag.FIN) && (clientFinAt === null || ms(s.time) < clientFinAt))
      .map((s) => ms(s.time)),
    speakers: [...speakers.values()],
    wireGapMs,
    wireGapAt,
    serverSegmentsAfterCrash: afterCrash.length,
    firstServerSegmentAfterCrash: afterCrash[0] ? ms(afterCrash[0].time) : null,
    clientRetransmitsAfterCrash,
    aroundCrash,
  };
}

/**
 * Runs the scenario once; see the module comment. Throws only when the bed
 * or a process cannot be set up (the message quotes the logs); anything
 * that goes wrong after the client has started is in the report
 * (`clientError`, `harnessError`) for the test to judge.
 */
export async function runFailover(opts: FailoverOptions = {}): Promise<FailoverReport> {
  const wrapped = opts.wrapped ?? true;
  const mode = wrapped ? (opts.mode === undefined ? 'hot' : opts.mode) : null;
  const crash = (opts.crash ?? mode !== null) && mode !== null;
  const bytes = opts.bytes ?? 20 * 1024 * 1024;
  const rateMbit = opts.rateMbit === undefined ? 40 : opts.rateMbit;
  const seed = opts.seed ?? scenarioSeed();
  const [lo, hi] = opts.crashWindow ?? [0.2, 0.8];
  const probeIntervalMs = opts.probeIntervalMs ?? 10;
  const failureTimeoutMs = opts.failureTimeoutMs ?? 30;
  const clientTimeoutMs = opts.clientTimeoutMs ?? 60_000;
  const log = opts.log ?? ((l: string) => console.log(l));
  const rand = mulberry32(seed);
  const crashFraction = crash ? lo + (hi - lo) * rand() : null;
  const crashAtBytes = crashFraction === null ? null : Math.floor(bytes * crashFraction);
  const clientSeed = Math.floor(rand() * 0xffffffff) + 1;
  log(
    `      failover: mode=${mode ?? 'none'} wrapped=${wrapped} seed=${seed} (replay: FTCP_E2E_SEED=${seed})` +
      (crashAtBytes !== null ? ` crash after ${crashAtBytes} echoed bytes (${(crashFraction! * 100).toFixed(1)}%)` : ''),
  );

  const dataDir = mkdtempSync(join(tmpdir(), 'ftcp-e2e-failover-'));
  let bed: Testbed;
  try {
    bed = await Testbed.create();
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const port = nextPort();
  const procs: Record<string, HostProcess> = {};
  let capture: Capture | undefined;
  let crashReport: CrashReport | undefined;
  let harnessError: string | undefined;
  let endpoint: string | undefined;
  const stalls: StallSnapshot[] = [];
  const logsOf = (): Record<string, string[]> =>
    Object.fromEntries(Object.entries(procs).map(([name, p]) => [name, [...p.stdoutLines.map((l) => `out ${l}`), ...p.stderrLines.map((l) => `err ${l}`)]]));
  try {
    const serverCmd = [ECHOD_BIN, bed.vip, String(port), '-v'];
    try {
      if (!wrapped) {
        procs['server'] = bed.spawn('primary', serverCmd[0]!, serverCmd.slice(1));
        await waitForAnyLine(procs['server'], (l) => l.includes('"listening"'), 5000, 'echod listening');
      } else {
        endpoint = `tcp://${bed.host('backup').replicaAddr}:${nextPort()}`;
        procs['buffer'] = bed.spawn('backup', FTCP_BIN, [
          'buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory',
          '--probe-interval', String(probeIntervalMs), '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info',
        ]);
        await waitForAnyLine(procs['buffer'], (l) => l.includes('"ready"'), 15_000, 'buffer ready');
        procs['primary'] = bed.spawn('primary', FTCP_BIN, [
          'primary', '--service', `${bed.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--node', 'primary-a',
          '--failure-timeout', String(failureTimeoutMs), '--log-level', 'info', '--', ...serverCmd,
        ]);
        await waitForAnyLine(procs['primary'], (l) => l.includes('"ready"'), 20_000, 'primary ready');
        await waitForAnyLine(procs['primary'], (l) => l.includes('"listening"'), 10_000, 'echod listening under ftcp primary');
        if (mode !== null) {
          procs['backup'] = bed.spawn('backup', FTCP_BIN, [
            'backup', '--mode', mode, '--service', `${bed.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--node', 'backup-b',
            '--log-level', 'info', '--', ...serverCmd,
          ]);
          await waitForAnyLine(procs['backup'], (l) => l.includes('"ready"'), 20_000, `backup (${mode}) ready`);
        }
      }
    } catch (err) {
      const logs = Object.entries(logsOf())
        .map(([name, lines]) => `--- ${name}\n${lines.slice(-40).join('\n')}`)
        .join('\n');
      throw new Error(`failover setup failed: ${(err as Error).message}\n${logs}`, { cause: err });
    }

    if (opts.capture !== false) capture = await bed.capture('client', { filter: `tcp port ${port}` });
    const client = bed.spawn('client', process.execPath, [
      ECHO_CLIENT_TOOL, '--host', bed.vip, '--port', String(port), '--bytes', String(bytes), '--seed', String(clientSeed),
      '--timeout-ms', String(clientTimeoutMs), '--progress-bytes', String(256 * 1024),
      ...(rateMbit !== null ? ['--rate-mbit', String(rateMbit)] : []),
    ]);
    procs['client'] = client;
    const clientDeadline = Date.now() + clientTimeoutMs + 5000;
    const watchdog = watchStalls(bed, client, endpoint, opts.stallMs ?? 3000, stalls);

    if (crashAtBytes !== null) {
      try {
        await waitForAnyLine(
          client,
          (l) => {
            const e = parseLogLine(l);
            return e !== undefined && (e.event === 'progress' || e.event === 'closing') && Number(e.fields['received']) >= crashAtBytes;
          },
          Math.max(1000, clientDeadline - Date.now()),
          `client progress to ${crashAtBytes} bytes`,
        );
        crashReport = await bed.crash('primary');
        log(`      crashed the primary at ${new Date(crashReport.cutAt).toISOString()} (killed ${crashReport.killedPids.length} processes)`);
      } catch (err) {
        harnessError = `no crash: ${(err as Error).message}`;
      }
    }

    const clientExit = await exitWithin(client, Math.max(1000, clientDeadline - Date.now()));
    if (clientExit === undefined) harnessError ??= `the client did not exit within ${clientTimeoutMs + 5000} ms`;
    await watchdog.stop();
    // The backup may log takeover-complete a little after the client resumed.
    if (crashReport !== undefined && procs['backup'] !== undefined) {
      await waitForAnyLine(procs['backup'], (l) => parseLogLine(l)?.event === 'takeover-complete', 2000, 'takeover-complete').catch(() => undefined);
    }

    const events = client.events();
    const done = events.find((e) => e.ev === 'done') as EchoClientDone | undefined;
    const clientError = events.find((e) => e.ev === 'error') as EchoClientError | undefined;
    const pcap = capture ? await capture.stop(100) : undefined;
    const summary = pcap ? summarizeCapture(pcap, bed, port, crashReport?.cutAt) : undefined;
    const cutAt = crashReport?.cutAt;
    const crashGap = cutAt === undefined ? undefined : done?.gaps.find((g) => g.at <= cutAt && g.end >= cutAt);
    return {
      mode,
      wrapped,
      seed,
      vip: bed.vip,
      port,
      bytes,
      rateMbit,
      crashAtBytes,
      crashFraction,
      client: done,
      clientError,
      clientExit,
      crash: crashReport,
      takeover: takeoverTimes(procs['buffer'], procs['primary'], procs['backup']),
      gapMs: done?.maxGapMs,
      crashGapMs: crashGap?.ms,
      resumedAfterCrashMs: crashGap !== undefined && cutAt !== undefined ? crashGap.end - cutAt : undefined,
      clientMs: done?.ms,
      capture: summary,
      logs: logsOf(),
      stalls,
      harnessError,
    };
  } finally {
    await capture?.stop(0).catch(() => undefined);
    await bed.destroy();
    rmSync(dataDir, { recursive: true, force: true });
    // A crashed (SIGKILLed) agent cannot remove its shim socket's directory.
    for (const dir of agentSocketDirs(Object.values(procs))) rmSync(dir, { recursive: true, force: true });
  }
}

/** The directories of the NSW agents' sockets named in `nsw.listen` events, if they look like an agent's own. */
function agentSocketDirs(procs: readonly HostProcess[]): string[] {
  const dirs: string[] = [];
  for (const p of procs) {
    for (const line of allLines(p)) {
      const e = parseLogLine(line);
      const socket = e?.event === 'nsw.listen' ? e.fields['socket'] : undefined;
      if (typeof socket !== 'string') continue;
      const dir = dirname(socket);
      if (/^ftcp-(primary|backup)-[A-Za-z0-9]{6}$/.test(basename(dir)) && dir.startsWith(tmpdir())) dirs.push(dir);
    }
  }
  return dirs;
}

/**
 * Watches the client's progress events; whenever it has been silent for
 * `stallMs` (at most three times), snapshots the sockets of every host that
 * is not crashed and the buffer's status. `stop` ends the watch and waits
 * for a snapshot under way (each command is bounded by 5 s).
 */
function watchStalls(bed: Testbed, client: HostProcess, endpoint: string | undefined, stallMs: number, out: StallSnapshot[]): { stop(): Promise<void> } {
  let stopped = false;
  let lastCount = -1;
  let lastChange = Date.now();
  let snapped = false;
  const loop = (async () => {
    while (!stopped && out.length < 3) {
      await sleep(100);
      const lines = client.stdoutLines;
      if (lines.length !== lastCount) {
        lastCount = lines.length;
        lastChange = Date.now();
        snapped = false;
        continue;
      }
      if (snapped || Date.now() - lastChange < stallMs || client.exitStatus !== undefined) continue;
      snapped = true;
      const last = [...client.events()].reverse().find((e) => e.ev === 'progress' || e.ev === 'connected');
      const outputs: Record<string, string> = {};
      const grab = async (label: string, role: HostRole, cmd: string, args: string[]): Promise<void> => {
        try {
          const r = await bed.exec(role, cmd, args, { timeoutMs: 5000 });
          outputs[label] = r.stdout;
        } catch (err) {
          outputs[label] = `(failed: ${(err as Error).message.slice(0, 500)})`;
        }
      };
      const jobs = (['client', 'primary', 'backup'] as const)
        .filter((role) => !bed.isCrashed(role))
        .map((role) => grab(`ss ${role}`, role, 'ss', ['-tinmo']));
      if (endpoint !== undefined) jobs.push(grab('status', 'backup', FTCP_BIN, ['status', '--json', '--buffer', endpoint]));
      await Promise.all(jobs);
      out.push({ at: Date.now(), sent: Number(last?.['sent'] ?? 0), received: Number(last?.['received'] ?? 0), outputs });
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
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
