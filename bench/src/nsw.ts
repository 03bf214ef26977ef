/**
 * NSW benchmark (issue 4): the cost of interception, against no shim in the
 * same run: a cheap call (clock_gettime) and a loopback one-byte round trip
 * through a replicated connection, with no shim, with the shim in
 * pass-through, and in record mode with the agent writing to a real buffer
 * (memory durability, its own process). Record mode also gives the calls/s
 * that reach the buffer (from the first call until the agent has every
 * record acknowledged by the buffer: the shim coalesces records, so the
 * program's own loop may end before they are stable) and the output-commit
 * stall (how long a server's send waits for its thread's records to be
 * stable).
 *
 * Playback (a replica's roll-forward, FT-TCP 3.7) in the same run, each
 * workload recorded to an in-memory log first and then replayed from it
 * (the buffer's own costs are the buffer benchmark's): the clock workload
 * (records/s replayed, against records/s recorded into the same kind of
 * log), and a bulk echo server (`packages/nsw/test/c/bulkecho.c`, one
 * connection, reads of 64 KiB and of 4 KiB) in ms per MiB of log (its
 * records and the client bytes it read), the figure FT-TCP's roll-forward
 * is given in.
 * Writes bench/results/nsw.json and prints a table.
 *
 * Usage: node bench/dist/src/nsw.js [--only none|passthrough|record|playback]
 *
 * `--only` runs one section (for profiling and iterating; the results file
 * is then not written): a mode's clock and round-trip runs, or playback.
 * FTCP_BENCH_NSW_BUFFER_NODE_ARGS adds node options to the buffer's process
 * (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`); the agent is this process.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:net';
import { MemoryRecordSink, NswAgent, shimPath } from '@ftcp/nsw';
import { CallWriter, StableBufferClient } from '@ftcp/stable-buffer';
import { fmt, table } from './stats.js';
import { spawnReady, stop } from './spawn.js';

type Mode = 'none' | 'passthrough' | 'record';
const MODES: Mode[] = ['none', 'passthrough', 'record'];
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1] : undefined;
if (process.argv.includes('--help') || (ONLY !== undefined && ![...MODES, 'playback'].includes(ONLY))) {
  console.error('usage: node bench/dist/src/nsw.js [--only none|passthrough|record|playback]');
  process.exit(process.argv.includes('--help') ? 0 : 2);
}
/** Whether a section runs: all do unless `--only` names one. */
const runs = (section: Mode | 'playback'): boolean => ONLY === undefined || ONLY === section;
const BUFFER_NODE_ARGS = (process.env.FTCP_BENCH_NSW_BUFFER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const work = mkdtempSync(join(tmpdir(), 'ftcp-bench-nsw-'));
const bin = join(work, 'nswbench');
execFileSync('gcc', ['-O2', '-Wall', '-o', bin, join(root, 'bench/native/nswbench.c')]);
const echoBin = join(work, 'bulkecho');
execFileSync('gcc', ['-O2', '-Wall', '-o', echoBin, join(root, 'packages/nsw/test/c/bulkecho.c')]);

const PORT = 27000 + (process.pid % 1000);

/** Runs the workload in a child, asynchronously: in record mode the agent in this process must keep serving it. */
async function run(mode: Mode, args: string[], socket: string): Promise<Record<string, number>> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.FTCP_NSW_MODE;
  if (mode !== 'none') env.LD_PRELOAD = shimPath();
  if (mode === 'record') Object.assign(env, { FTCP_NSW_MODE: 'record', FTCP_NSW_SOCKET: socket, FTCP_NSW_NAME: `bench-${args[0]}`, FTCP_NSW_PORT: String(PORT) });
  const recordedBefore = agent?.counters.recorded ?? 0;
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`nswbench ${args.join(' ')} (${mode}) exited ${code}: ${err}`);
  const res = JSON.parse(out) as Record<string, number>;
  if (mode === 'record' && args[0] === 'clock' && agent) {
    // Every call of the run (its N and the two clock reads that time them) acknowledged by the buffer.
    const want = recordedBefore + Number(args[1]) + 2;
    while (agent.counters.recorded < want || agent.counters.unstable > 0) await new Promise((r) => setTimeout(r, 1));
    res.stableCallsPerSec = Number(args[1]) / (Number(process.hrtime.bigint() - BigInt(res.t0Ns!)) / 1e9);
  }
  delete res.t0Ns;
  return res;
}

let agent: NswAgent | undefined;
const results: Record<string, Record<Mode, Record<string, number>>> = { clock: {} as never, rtt: {} as never };
if (ONLY !== 'playback') {
  // The CLI's entry run by this node (what bin/ftcp does), so that node options can be given to it.
  const buffer = await spawnReady(process.execPath, [...BUFFER_NODE_ARGS, join(root, 'packages/cli/bin/run.js'), 'buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', join(work, 'buffer'), '--durability', 'memory', '--log-level', 'error', '--max-log-bytes', '64GiB']);
  const client = StableBufferClient.connect({ endpoint: buffer.endpoint, node: 'bench-primary' });
  const socket = join(work, 'agent.sock');
  try {
    await client.attachAsWriter();
    agent = new NswAgent({ socketPath: socket, mode: 'record', sink: new CallWriter(client) });
    await agent.listen();
    const CLOCK_N = { none: 2_000_000, passthrough: 2_000_000, record: 200_000 };
    const RTT_N = { none: 20_000, passthrough: 20_000, record: 5_000 };
    for (const mode of MODES.filter(runs)) {
      results.clock![mode] = await run(mode, ['clock', String(CLOCK_N[mode])], socket);
      results.rtt![mode] = await run(mode, ['rtt', String(RTT_N[mode]), String(PORT)], socket);
    }
  } finally {
    await agent?.close();
    client.close();
    await stop(buffer.child);
  }
}


/** What one playback workload gave: the recording's and the replay's rates. */
interface PlaybackResult {
  records: number;
  logBytes: number;
  recordSeconds: number;
  replaySeconds: number;
  recordedPerSec: number;
  replayedPerSec: number;
  msPerMiB: number;
}

/** Spawns `file` under the shim in `mode` talking to `agent`; resolves with its exit code and the seconds it ran. */
function runShimmed(file: string, args: string[], mode: 'record' | 'playback', agent: NswAgent, name: string, port: number, onStdout?: (line: string) => void): Promise<{ code: number | null; seconds: number; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: shimPath(), FTCP_NSW_MODE: mode, FTCP_NSW_SOCKET: agent.options.socketPath, FTCP_NSW_NAME: name, FTCP_NSW_PORT: String(port) };
  const t0 = performance.now();
  const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => onStdout?.(d));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, seconds: (performance.now() - t0) / 1000, stderr: err })));
}

/** Records the clock workload into memory, then replays it: records/s each way. */
async function playbackClock(n: number): Promise<PlaybackResult> {
  const sink = new MemoryRecordSink();
  const rec = new NswAgent({ socketPath: join(work, 'pb-rec.sock'), mode: 'record', sink });
  const play = new NswAgent({ socketPath: join(work, 'pb-play.sock'), mode: 'playback', source: sink });
  await rec.listen();
  await play.listen();
  try {
    const t0 = performance.now();
    const r = await runShimmed(bin, ['clock', String(n)], 'record', rec, 'pb-clock', PORT);
    if (r.code !== 0) throw new Error(`clock record exited ${r.code}: ${r.stderr}`);
    while (rec.counters.recorded < n + 2 || rec.counters.unstable > 0) await new Promise((res) => setTimeout(res, 1));
    const recordSeconds = (performance.now() - t0) / 1000;
    const records = sink.records('pb-clock');
    const p = await runShimmed(bin, ['clock', String(n)], 'playback', play, 'pb-clock', PORT);
    if (p.code !== 0 || play.counters.divergences > 0) throw new Error(`clock playback exited ${p.code}: ${p.stderr}`);
    const logBytes = records.reduce((a, b) => a + b.length, 0);
    return { records: records.length, logBytes, recordSeconds, replaySeconds: p.seconds, recordedPerSec: records.length / recordSeconds, replayedPerSec: records.length / p.seconds, msPerMiB: (p.seconds * 1000) / (logBytes / 2 ** 20) };
  } finally {
    await rec.close();
    await play.close();
  }
}

/** Records the bulk echo server echoing `mib` MiB in reads of `block` bytes, then replays it from the log and the client's bytes. */
async function playbackEcho(mib: number, block: number): Promise<PlaybackResult> {
  const sink = new MemoryRecordSink();
  const port = PORT + 1;
  const sent: Buffer[] = [];
  const instream = { readInstream: async (_peer: unknown, offset: number, length: number) => clientBytes.subarray(offset, offset + length) };
  let clientBytes = Buffer.alloc(0);
  const rec = new NswAgent({ socketPath: join(work, 'pb-rec.sock'), mode: 'record', sink });
  const play = new NswAgent({ socketPath: join(work, 'pb-play.sock'), mode: 'playback', source: sink, instream });
  await rec.listen();
  await play.listen();
  try {
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    const t0 = performance.now();
    const server = runShimmed(echoBin, [String(port), String(block)], 'record', rec, 'pb-echo', port, (d) => d.includes('listening') && listening());
    await ready;
    await new Promise<void>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1');
      const block = Buffer.alloc(256 * 1024);
      let got = 0;
      let left = mib * 2 ** 20;
      const pump = (): void => {
        while (left > 0) {
          for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((left + i) >>> 0, i);
          const chunk = Buffer.from(block.subarray(0, Math.min(left, block.length)));
          left -= chunk.length;
          sent.push(chunk);
          if (!sock.write(chunk)) return void sock.once('drain', pump);
        }
        sock.end();
      };
      sock.on('data', (d: Buffer) => (got += d.length));
      sock.on('end', () => (got === mib * 2 ** 20 ? resolve() : reject(new Error(`echo returned ${got} bytes`))));
      sock.on('error', reject);
      sock.on('connect', pump);
    });
    const r = await server;
    if (r.code !== 0) throw new Error(`echo record exited ${r.code}: ${r.stderr}`);
    while (rec.counters.unstable > 0) await new Promise((res) => setTimeout(res, 1));
    const recordSeconds = (performance.now() - t0) / 1000;
    clientBytes = Buffer.concat(sent);
    const records = sink.records('pb-echo');
    const p = await runShimmed(echoBin, [String(port), String(block)], 'playback', play, 'pb-echo', port);
    if (p.code !== 0 || play.counters.divergences > 0) throw new Error(`echo playback exited ${p.code}: ${p.stderr}`);
    const replicaSent = play.replicatedConnections()[0]?.unacked.length;
    if (replicaSent !== clientBytes.length) throw new Error(`the replica echoed ${replicaSent} bytes, not ${clientBytes.length}`);
    const logBytes = records.reduce((a, b) => a + b.length, 0) + clientBytes.length;
    return { records: records.length, logBytes, recordSeconds, replaySeconds: p.seconds, recordedPerSec: records.length / recordSeconds, replayedPerSec: records.length / p.seconds, msPerMiB: (p.seconds * 1000) / (logBytes / 2 ** 20) };
  } finally {
    await rec.close();
    await play.close();
  }
}

const playbackRuns = { clock: [] as PlaybackResult[], echo: [] as PlaybackResult[], echoSmall: [] as PlaybackResult[] };
try {
  for (let i = 0; i < (runs('playback') ? 3 : 0); i++) {
    playbackRuns.clock.push(await playbackClock(200_000));
    playbackRuns.echo.push(await playbackEcho(32, 64 * 1024));
    playbackRuns.echoSmall.push(await playbackEcho(8, 4096));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (ONLY !== undefined && ONLY !== 'playback') {
  console.log(JSON.stringify({ clock: results.clock![ONLY as Mode], rtt: results.rtt![ONLY as Mode] }, null, 2));
  process.exit(0);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const playback = {
  clock: { runs: playbackRuns.clock, recordedPerSec: median(playbackRuns.clock.map((r) => r.recordedPerSec)), replayedPerSec: median(playbackRuns.clock.map((r) => r.replayedPerSec)) },
  echo: { runs: playbackRuns.echo, replayedPerSec: median(playbackRuns.echo.map((r) => r.replayedPerSec)), msPerMiB: median(playbackRuns.echo.map((r) => r.msPerMiB)) },
  echoSmall: { runs: playbackRuns.echoSmall, replayedPerSec: median(playbackRuns.echoSmall.map((r) => r.replayedPerSec)), msPerMiB: median(playbackRuns.echoSmall.map((r) => r.msPerMiB)) },
};
console.log(table(['playback (median of 3)', 'records', 'recorded/s', 'replayed/s', 'ms/MiB of log'], [
  ['clock_gettime loop', playbackRuns.clock[0]!.records, fmt(playback.clock.recordedPerSec, 0), fmt(playback.clock.replayedPerSec, 0), fmt(median(playbackRuns.clock.map((r) => r.msPerMiB)))],
  ['echo, 32 MiB in 64 KiB reads', playbackRuns.echo[0]!.records, fmt(median(playbackRuns.echo.map((r) => r.recordedPerSec)), 0), fmt(playback.echo.replayedPerSec, 0), fmt(playback.echo.msPerMiB)],
  ['echo, 8 MiB in 4 KiB reads', playbackRuns.echoSmall[0]!.records, fmt(median(playbackRuns.echoSmall.map((r) => r.recordedPerSec)), 0), fmt(playback.echoSmall.replayedPerSec, 0), fmt(playback.echoSmall.msPerMiB)],
]));
if (ONLY === 'playback') process.exit(0);

const c = results.clock!;
const r = results.rtt!;
const rows = (['none', 'passthrough', 'record'] as Mode[]).map((m) => [
  m,
  fmt(c[m]!.nsPerCall!),
  fmt(c[m]!.nsPerCall! / c.none!.nsPerCall!, 2),
  fmt(r[m]!.rttP50Ns! / 1000),
  fmt(r[m]!.rttP99Ns! / 1000),
  fmt(r[m]!.rttP50Ns! / r.none!.rttP50Ns!, 2),
  fmt(r[m]!.sendP50Ns! / 1000),
  fmt(r[m]!.sendP99Ns! / 1000),
]);
console.log(table(['mode', 'clock ns/call', 'x none', 'rtt p50 us', 'rtt p99 us', 'x none', 'send p50 us', 'send p99 us'], rows));
// Calls from the program's first to the buffer's acknowledgement of its last record.
const recordCallsPerSec = c.record!.stableCallsPerSec!;
const passThroughOverheadNs = c.passthrough!.nsPerCall! - c.none!.nsPerCall!;
const targets = {
  playbackRecordsPerSec: { value: playback.clock.replayedPerSec, target: '>= 120000 (10x the round-trip playback)', met: playback.clock.replayedPerSec >= 120_000 },
  rollForwardMsPerMiB: { value: Math.max(playback.echo.msPerMiB, playback.echoSmall.msPerMiB), target: '<= 20 (the FT-TCP paper\'s roll-forward)', met: Math.max(playback.echo.msPerMiB, playback.echoSmall.msPerMiB) <= 20 },
  passThroughInterceptionNs: { value: passThroughOverheadNs, target: '< 100', met: passThroughOverheadNs < 100 },
  recordCallsPerSecToBuffer: { value: recordCallsPerSec, target: '>= 200000', met: recordCallsPerSec >= 200_000 },
};
console.log('\ntargets:');
for (const [k, v] of Object.entries(targets)) console.log(`  ${k}: ${fmt(v.value)} (${v.target}) ${v.met ? 'met' : 'NOT met'}`);
console.log(`output-commit stall (record-mode send minus pass-through send), p50: ${fmt((r.record!.sendP50Ns! - r.passthrough!.sendP50Ns!) / 1000)} us, p99: ${fmt((r.record!.sendP99Ns! - r.passthrough!.sendP99Ns!) / 1000)} us`);
const out = join(root, 'bench/results/nsw.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length }, results, playback, targets }, null, 2) + '\n');
console.log(`\nwritten to ${out}`);
