/**
 * Failover benchmark (issue 5). Root; builds namespaces with the e2e test bed.
 *
 * 1. Crashes: for each backup mode, N fail-stop crashes of the primary host
 *    at a seeded random point of a 20 MiB echo stream each way (the e2e
 *    harness, `runFailover`), 30 ms failure timeout. Per crash, from the
 *    buffer's and the backup's log lines (failover-parts.ts): the
 *    client-visible gap (the client's inter-arrival gap across the crash)
 *    and its parts one after another: detection (crash to the buffer's
 *    verdict), promotion (to the new epoch), log fetch (to every record up to
 *    the promotion's head fetched; cold, the replica's process start is in
 *    it and also given alone), VIP (to the VIP moved), roll-forward after the
 *    VIP (what the replica still had to play), rebuild (to every connection
 *    rebuilt), first byte after (to the client's next byte). Also the whole
 *    roll-forward (promotion to every logged call played; the replica plays
 *    as records arrive, alongside the log fetch and the VIP step) and the
 *    older combined roll-forward and rebuild (VIP moved to takeover complete).
 *    Cold roll-forward is also given as ms per MiB of log replayed: the whole
 *    roll-forward over the log up to the promotion's head as the cold replica
 *    fetched it from LSN 0, call data plus the client's logged segment bytes
 *    (`logBytes` of the backup's `log-fetched` event), not the stream's bytes
 *    at the crash. A takeover that began before the crash (the detector
 *    fired on a live but slow primary) is counted as a false detection and
 *    left out of the gap statistics.
 * 2. A plot of the client's received bytes against time around one hot
 *    crash (bench/results/failover-plot.svg), like FT-TCP's figures 6-8.
 * 3. Request latency added by ftcp: redis-benchmark PING, one connection, to
 *    a bare redis-server in the primary namespace against the same under
 *    `ftcp primary` with a hot backup following.
 *
 * Writes bench/results/failover.json and prints tables. Flags:
 * --crashes N (20), --modes hot,cold, --bytes MiB (20), --rate-mbit R (40),
 * --ack STRATEGY (the primary's; eager, `ftcp primary`'s default, writes
 * failover.json and the plot, another writes failover-STRATEGY.json only).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FTCP_BIN, Testbed, nextPort, runFailover, type FailoverReport, type HostProcess } from '@ftcp/e2e';
import { ACK_STRATEGIES, type AckStrategy } from '@ftcp/ssw';
import { PARTS, sample, type CrashSample } from './failover-parts.js';
import { fmt, quantile, table } from './stats.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const CRASHES = Number(flag('crashes', '20'));
const MODES = flag('modes', 'hot,cold').split(',') as ('hot' | 'cold')[];
const ACK = flag('ack', 'eager') as AckStrategy;
if (!ACK_STRATEGIES.includes(ACK)) throw new Error(`--ack must be one of ${ACK_STRATEGIES.join(', ')}, not ${ACK}`);
const RESULTS = ACK === 'eager' ? 'failover.json' : `failover-${ACK}.json`;
const BYTES = Number(flag('bytes', '20')) * 1024 * 1024;
const RATE = Number(flag('rate-mbit', '40'));
const FAILURE_TIMEOUT_MS = 30;

function stats(values: (number | null)[]): { n: number; p50: number; p99: number; max: number } {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x));
  return { n: v.length, p50: quantile(v, 0.5), p99: quantile(v, 0.99), max: v.length ? Math.max(...v) : Number.NaN };
}

/** An SVG of received bytes against time from the client's trace, the crash and the takeover marked. */
function plot(trace: string, r: FailoverReport): string {
  const cut = r.crash!.cutAt;
  const pts = trace
    .trim()
    .split('\n')
    .map((l) => l.split(',').map(Number) as [number, number])
    .filter(([t]) => t >= cut - 1500 && t <= cut + 1500);
  const W = 720;
  const H = 420;
  const m = { l: 70, r: 20, t: 30, b: 50 };
  const t0 = cut - 1500;
  const yMin = Math.min(...pts.map((p) => p[1]));
  const yMax = Math.max(...pts.map((p) => p[1]));
  const x = (t: number): number => m.l + ((t - t0) / 3000) * (W - m.l - m.r);
  const y = (b: number): number => H - m.b - ((b - yMin) / Math.max(1, yMax - yMin)) * (H - m.t - m.b);
  const line = (t: number | undefined, label: string, color: string): string =>
    t === undefined ? '' : `<line x1="${x(t)}" y1="${m.t}" x2="${x(t)}" y2="${H - m.b}" stroke="${color}" stroke-dasharray="4 3"/><text x="${x(t) + 3}" y="${m.t + 12}" font-size="11" fill="${color}">${label}</text>`;
  const ticks = [-1500, -1000, -500, 0, 500, 1000, 1500]
    .map((d) => `<text x="${x(cut + d)}" y="${H - m.b + 16}" font-size="11" text-anchor="middle">${d}</text>`)
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="18" font-size="13" text-anchor="middle">Bytes received by the client around a crash of the primary (${r.mode} backup, seed ${r.seed})</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>
${ticks}<text x="${W / 2}" y="${H - 12}" font-size="12" text-anchor="middle">ms from the crash</text>
<text x="14" y="${H / 2}" font-size="12" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">received, MiB (${fmt(yMin / 1048576)} to ${fmt(yMax / 1048576)})</text>
<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="${pts.map(([t, b]) => `${x(t).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>
${line(cut, 'crash', '#c0392b')}${line(r.takeover.bufferVerdicts?.find((v) => v >= cut), 'detected', '#8e44ad')}${line(r.takeover.takeoverComplete, 'live', '#27ae60')}
</svg>
`;
}

/** redis-benchmark PING latency (ms) from the client namespace. */
async function redisPing(bed: Testbed, port: number): Promise<{ p50: number; p99: number; avg: number; rps: number }> {
  const r = await bed.exec('client', 'redis-benchmark', ['-h', bed.vip, '-p', String(port), '-c', '1', '-n', '5000', '-t', 'ping', '--csv'], { timeoutMs: 120_000 });
  const row = r.stdout.split('\n').find((l) => l.startsWith('"PING_MBULK"'));
  if (!row) throw new Error(`redis-benchmark printed no PING_MBULK row: ${r.stdout} ${r.stderr}`);
  const f = row.split(',').map((c) => Number(c.replace(/"/g, '')));
  return { rps: f[1]!, avg: f[2]!, p50: f[4]!, p99: f[6]! };
}

async function waitForPong(bed: Testbed, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await bed.exec('client', 'redis-cli', ['-h', bed.vip, '-p', String(port), 'PING']).catch(() => ({ stdout: '' }));
    if (r.stdout.trim() === 'PONG') return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('redis did not answer PING');
}

async function redisLatency(): Promise<Record<string, unknown>> {
  const redisArgs = (port: number): string[] => ['redis-server', '--port', String(port), '--bind', '0.0.0.0', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'];
  const clean = await (async () => {
    const bed = await Testbed.create();
    try {
      const port = nextPort();
      bed.spawn('primary', redisArgs(port)[0]!, redisArgs(port).slice(1));
      await waitForPong(bed, port);
      return await redisPing(bed, port);
    } finally {
      await bed.destroy();
    }
  })();
  const wrapped = await (async () => {
    const bed = await Testbed.create();
    const dataDir = mkdtempSync(join(tmpdir(), 'ftcp-bench-failover-'));
    try {
      const port = nextPort();
      const endpoint = `tcp://${bed.host('backup').replicaAddr}:${nextPort()}`;
      const buffer: HostProcess = bed.spawn('backup', FTCP_BIN, ['buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory', '--probe-interval', '10', '--failure-timeout', String(FAILURE_TIMEOUT_MS), '--log-level', 'warn']);
      await buffer.waitForLine((l) => l.includes('"ready"'), 15_000);
      const service = ['--service', `${bed.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--failure-timeout', String(FAILURE_TIMEOUT_MS), '--log-level', 'warn'];
      const primary = bed.spawn('primary', FTCP_BIN, ['primary', ...service, '--node', 'primary-a', '--ack', ACK, '--', ...redisArgs(port)]);
      await primary.waitForLine((l) => l.includes('"ready"'), 20_000);
      const backup = bed.spawn('backup', FTCP_BIN, ['backup', '--mode', 'hot', ...service, '--node', 'backup-b', '--', ...redisArgs(port)]);
      await backup.waitForLine((l) => l.includes('"ready"'), 20_000);
      await waitForPong(bed, port);
      return await redisPing(bed, port);
    } finally {
      await bed.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  })();
  return { clean, wrapped, ratioP50: wrapped.p50 / clean.p50, ratioP99: wrapped.p99 / clean.p99, addedP50Ms: wrapped.p50 - clean.p50, addedP99Ms: wrapped.p99 - clean.p99 };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the failover benchmark builds network namespaces: run it as root');
  const out = join(root, 'bench/results');
  mkdirSync(out, { recursive: true });
  const traceDir = mkdtempSync(join(tmpdir(), 'ftcp-bench-trace-'));
  const results: Record<string, unknown> = {};
  const rows: (string | number)[][] = [];
  let plotted = false;
  try {
    for (const mode of MODES) {
      const samples: CrashSample[] = [];
      for (let i = 0; i < CRASHES; i++) {
        const seed = 0x5eed0000 + i * 7919 + (mode === 'cold' ? 1 : 0);
        const trace = join(traceDir, `${mode}-${i}.csv`);
        const r = await runFailover({ mode, seed, bytes: BYTES, rateMbit: RATE, failureTimeoutMs: FAILURE_TIMEOUT_MS, crashWindow: [0.3, 0.7], clientTrace: trace, ack: ACK, log: () => {} });
        const s = sample(r);
        samples.push(s);
        process.stdout.write(`${mode} ${i + 1}/${CRASHES}: gap ${fmt(s.gapMs ?? Number.NaN, 0)} ms${s.ok ? '' : ` FAILED ${s.error ?? ''}`}${s.falseDetection ? ' (false detection before the crash)' : ''}\n`);
        if (!plotted && ACK === 'eager' && mode === 'hot' && s.ok && !s.falseDetection && r.crash) {
          try {
            writeFileSync(join(out, 'failover-plot.svg'), plot(readFileSync(trace, 'utf8'), r));
            plotted = true;
          } catch {
            // No trace from this run; the next one may have it.
          }
        }
      }
      const valid = samples.filter((s) => s.ok && !s.falseDetection);
      const parts = Object.fromEntries(PARTS.map((name) => [name, stats(valid.map((s) => s[name]))]));
      results[mode] = { crashes: samples.length, failed: samples.filter((s) => !s.ok).length, falseDetections: samples.filter((s) => s.falseDetection).length, ...parts, samples };
      // A part this mode does not have (the replica's start and ms per MiB are cold's) has no row.
      for (const [name, st] of Object.entries(parts)) if (st.n > 0) rows.push([`${mode} ${name}`, st.n, fmt(st.p50), fmt(st.p99), fmt(st.max)]);
    }
    const latency = await redisLatency();
    results['redisPing'] = latency;
    const report = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model },
      settings: { ack: ACK, crashes: CRASHES, bytesEachWay: BYTES, rateMbit: RATE, failureTimeoutMs: FAILURE_TIMEOUT_MS, probeIntervalMs: 10 },
      targets: { hotP50Ms: 100, hotP99Ms: 300, coldPaperMsPerMiB: 20 },
      ...results,
    };
    writeFileSync(join(out, RESULTS), JSON.stringify(report, null, 2) + '\n');
    console.log(`\nfailover (primary --ack ${ACK}): ${CRASHES} crashes per mode, ${BYTES / 1048576} MiB each way at ${RATE} Mbit/s, failure timeout ${FAILURE_TIMEOUT_MS} ms`);
    console.log(table(['measure (ms unless MiB)', 'n', 'p50', 'p99', 'max'], rows));
    for (const mode of MODES) {
      const r = results[mode] as { failed: number; falseDetections: number };
      console.log(`${mode}: ${r.failed} client failures, ${r.falseDetections} false detections before the crash`);
    }
    const l = latency as { clean: { p50: number; p99: number }; wrapped: { p50: number; p99: number }; ratioP50: number; ratioP99: number };
    console.log(`\nredis PING, one connection: clean p50 ${fmt(l.clean.p50, 3)} ms p99 ${fmt(l.clean.p99, 3)} ms; under ftcp p50 ${fmt(l.wrapped.p50, 3)} ms p99 ${fmt(l.wrapped.p99, 3)} ms (x${fmt(l.ratioP50, 2)}, x${fmt(l.ratioP99, 2)})`);
    console.log(`wrote ${join(out, RESULTS)}${plotted ? ` and ${join(out, 'failover-plot.svg')}` : ''}`);
  } finally {
    rmSync(traceDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
