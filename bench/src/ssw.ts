/**
 * SSW benchmark (issue 3): throughput of a bulk transfer through the
 * south-side wrap in record mode against the same transfer with no wrap, in
 * the same test bed and run, like FT-TCP's Table 4: incoming (client to
 * server) and outgoing, symmetric (no rate limit) and asymmetric (client link
 * limited to 1 Gbit/s, replica link unlimited), for each ack strategy.
 * iperf3 makes the traffic. Writes bench/results/ssw.json and prints a table.
 *
 * Usage: node bench/dist/src/ssw.js [--seconds N] [--rounds N] [--cc LIST] [--only SETUP:DIRECTION[:VARIANT]]
 *
 * `--cc` (default: cubic, and this machine's default congestion control if it
 * is another): every row is measured under each, set on both ends of the
 * transfer (iperf3 -C). It matters: BBR paces at the delivery rate it sees,
 * and the wrap's buffer round trip makes ACKs arrive in uneven bursts, which
 * BBR reads as a slower path; cubic grows its window past that. Linux and
 * Debian 12 default to cubic; this test machine's sysctl says bbr.
 *
 * `--rounds` (3): every variant runs that many times, interleaved with the
 * clean runs; the table shows medians.
 *
 * `--only` runs a subset (for profiling; the results file is then not
 * written); FTCP_BENCH_SSW_NODE_ARGS adds node options to the wrap's
 * process (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). The wrap's last
 * status (packets, rewrites, injected ACKs) is printed after each run.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FTCP_BIN, SSW_RECORD_TOOL, Testbed, nextPort, type HostProcess } from '@ftcp/e2e';
import { ACK_STRATEGIES, type AckStrategy } from '@ftcp/ssw';
import { fmt, quantile, table } from './stats.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 5;
const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 3;
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? (process.argv[onlyArg + 1] ?? '').split(':') : [];
const ccArg = process.argv.indexOf('--cc');
const CCS = ccArg > 0 ? (process.argv[ccArg + 1] ?? '').split(',').filter((c) => c !== '') : defaultCongestionControls();
const NODE_ARGS = (process.env.FTCP_BENCH_SSW_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const selected = (...parts: string[]): boolean => ONLY.every((o, i) => parts[i] === undefined || o === parts[i]);

type Variant = 'clean' | AckStrategy;

/** cubic first (the kernel's and Debian's default), then the machine's own if it differs. */
function defaultCongestionControls(): string[] {
  const own = readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  return own === 'cubic' ? ['cubic'] : ['cubic', own];
}
type Direction = 'incoming' | 'outgoing';
type Setup = 'symmetric' | 'asymmetric';

interface Row {
  /** TCP congestion control of both ends. */
  cc: string;
  setup: Setup;
  direction: Direction;
  variant: Variant;
  /** The median of the rounds. */
  mbitPerSec: number;
  percentOfClean: number;
  /** Every round's rate. */
  runs: number[];
}

async function iperf(bed: Testbed, port: number, direction: Direction, cc: string): Promise<number> {
  const server = bed.spawn('primary', 'iperf3', ['-s', '-1', '--forceflush', '-B', bed.vip, '-p', String(port)]);
  await server.waitForLine((l) => l.includes('Server listening'), 10_000);
  const args = ['-c', bed.vip, '-p', String(port), '-t', String(SECONDS), '-C', cc, '-J', ...(direction === 'outgoing' ? ['-R'] : [])];
  const r = await bed.exec('client', 'iperf3', args, { timeoutMs: (SECONDS + 30) * 1000 });
  await server.exited;
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e6;
}

async function withWrap<T>(bed: Testbed, endpoint: string, port: number, ack: Variant, fn: () => Promise<T>): Promise<T> {
  if (ack === 'clean') return fn();
  const ssw: HostProcess = bed.spawn('primary', process.execPath, [...NODE_ARGS, SSW_RECORD_TOOL, '--vip', bed.vip, '--port', String(port), '--buffer', endpoint, '--ack', ack, '--status-ms', '1000']);
  await ssw.waitForEvent('ready', 15_000);
  try {
    return await fn();
  } finally {
    ssw.signal('SIGTERM');
    await ssw.waitForEvent('stopped', 10_000).catch(() => ssw.signal('SIGKILL'));
    const statuses = ssw.events().filter((e) => e.ev === 'status');
    const last = statuses.pop();
    if (last) console.error(`  wrap status: ${JSON.stringify({ wrap: last.wrap, recorder: last.recorder, queue: last.queue })}`);
    console.error(`  buffer writes outstanding, per second: ${statuses.map((e) => e.unacknowledged).join(' ')}`);
  }
}

const rows: Row[] = [];
const bed = await Testbed.create();
// NFQUEUE copies at most 65531 bytes of a packet: keep GSO and GRO packets below that, clean runs too
// (60000, as in the SSW's NFQUEUE test; FTCP_BENCH_SSW_GSO overrides it). Larger packets mean fewer
// per-packet costs in the wrap: a queue message, a verdict, the JavaScript work.
const GSO = process.env.FTCP_BENCH_SSW_GSO ?? '60000';
await bed.ip('primary', ['link', 'set', 'lan0', 'gso_max_size', GSO, 'gro_max_size', GSO]);
const dataDir = mkdtempSync(join(tmpdir(), 'ftcp-bench-ssw-'));
try {
  const endpoint = `tcp://${bed.host('backup').replicaAddr}:${nextPort()}`;
  for (const setup of ['symmetric', 'asymmetric'] as Setup[]) {
    if (!selected(setup)) continue;
    if (setup === 'asymmetric') await bed.limitRate('client', { upMbit: 1000, downMbit: 1000 });
    for (const direction of ['incoming', 'outgoing'] as Direction[]) {
      if (!selected(setup, direction)) continue;
      for (const cc of CCS) {
        // Rounds of every variant, clean among them, so a slow or fast spell of
        // the host (the clean symmetric rate alone varies by a third from run
        // to run here) falls on all of them; each row is the median.
        const variants = (['clean', ...ACK_STRATEGIES] as Variant[]).filter((v) => v === 'clean' || selected(setup, direction, v));
        const runs = new Map<Variant, number[]>(variants.map((v) => [v, []]));
        for (let round = 1; round <= ROUNDS; round++) {
          for (const variant of variants) {
            // A fresh buffer per run, so one run's log does not slow the next.
            rmSync(dataDir, { recursive: true, force: true });
            const buffer = bed.spawn('backup', FTCP_BIN, ['buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory', '--log-level', 'error', '--max-log-bytes', '64GiB']);
            await buffer.waitForLine((l) => l.includes('"ready"'), 15_000);
            const port = nextPort();
            const mbit = await withWrap(bed, endpoint, port, variant, () => iperf(bed, port, direction, cc));
            buffer.signal('SIGTERM');
            await buffer.exited;
            runs.get(variant)!.push(mbit);
            console.error(`${setup} ${direction} ${cc} ${variant} (round ${round}): ${fmt(mbit)} Mbit/s`);
          }
        }
        const clean = quantile(runs.get('clean')!, 0.5);
        for (const variant of variants) {
          const mbit = quantile(runs.get(variant)!, 0.5);
          rows.push({ cc, setup, direction, variant, mbitPerSec: mbit, percentOfClean: (100 * mbit) / clean, runs: runs.get(variant)! });
        }
      }
    }
  }
} finally {
  await bed.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}

console.log(table(['cc', 'setup', 'direction', 'variant', 'Mbit/s', '% of clean'], rows.map((r) => [r.cc, r.setup, r.direction, r.variant, fmt(r.mbitPerSec), fmt(r.percentOfClean)])));
const pct = (cc: string, s: Setup, d: Direction, v: Variant) => rows.find((r) => r.cc === cc && r.setup === s && r.direction === d && r.variant === v)?.percentOfClean ?? Number.NaN;
const best = (cc: string, s: Setup, d: Direction) => Math.max(...ACK_STRATEGIES.map((a) => pct(cc, s, d, a)));
/** Per congestion control: the best ack strategy's percent of clean against the target. */
const targets = Object.fromEntries(
  CCS.map((cc) => [
    cc,
    {
      asymmetricIncoming: { value: best(cc, 'asymmetric', 'incoming'), target: '>= 95%' },
      asymmetricOutgoing: { value: best(cc, 'asymmetric', 'outgoing'), target: '>= 95%' },
      symmetricIncoming: { value: best(cc, 'symmetric', 'incoming'), target: '>= 60%' },
      symmetricOutgoing: { value: best(cc, 'symmetric', 'outgoing'), target: '>= 95%' },
    },
  ]),
);
for (const [cc, byCase] of Object.entries(targets)) {
  console.log(`\ntargets under ${cc} (best ack strategy):`);
  for (const [k, v] of Object.entries(byCase)) console.log(`  ${k}: ${fmt(v.value)}% (${v.target})`);
}
if (ONLY.length > 0) process.exit(0);
const out = join(root, 'bench/results/ssw.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, congestionControls: CCS, machine: { cpus: cpus().length }, rows, targets }, null, 2) + '\n');
console.log(`\nwritten to ${out}`);
