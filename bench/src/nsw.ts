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
 * Writes bench/results/nsw.json and prints a table.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NswAgent, shimPath } from '@ftcp/nsw';
import { CallWriter, StableBufferClient } from '@ftcp/stable-buffer';
import { fmt, table } from './stats.js';
import { spawnReady, stop } from './spawn.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const work = mkdtempSync(join(tmpdir(), 'ftcp-bench-nsw-'));
const bin = join(work, 'nswbench');
execFileSync('gcc', ['-O2', '-Wall', '-o', bin, join(root, 'bench/native/nswbench.c')]);

type Mode = 'none' | 'passthrough' | 'record';
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

const buffer = await spawnReady(join(root, 'bin/ftcp'), ['buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', join(work, 'buffer'), '--durability', 'memory', '--log-level', 'error', '--max-log-bytes', '64GiB']);
const client = StableBufferClient.connect({ endpoint: buffer.endpoint, node: 'bench-primary' });
const socket = join(work, 'agent.sock');
let agent: NswAgent | undefined;
const results: Record<string, Record<Mode, Record<string, number>>> = { clock: {} as never, rtt: {} as never };
try {
  await client.attachAsWriter();
  agent = new NswAgent({ socketPath: socket, mode: 'record', sink: new CallWriter(client) });
  await agent.listen();
  const CLOCK_N = { none: 2_000_000, passthrough: 2_000_000, record: 200_000 };
  const RTT_N = { none: 20_000, passthrough: 20_000, record: 5_000 };
  for (const mode of ['none', 'passthrough', 'record'] as Mode[]) {
    results.clock![mode] = await run(mode, ['clock', String(CLOCK_N[mode])], socket);
    results.rtt![mode] = await run(mode, ['rtt', String(RTT_N[mode]), String(PORT)], socket);
  }
} finally {
  await agent?.close();
  client.close();
  await stop(buffer.child);
  rmSync(work, { recursive: true, force: true });
}

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
  passThroughInterceptionNs: { value: passThroughOverheadNs, target: '< 100', met: passThroughOverheadNs < 100 },
  recordCallsPerSecToBuffer: { value: recordCallsPerSec, target: '>= 200000', met: recordCallsPerSec >= 200_000 },
};
console.log('\ntargets:');
for (const [k, v] of Object.entries(targets)) console.log(`  ${k}: ${fmt(v.value)} (${v.target}) ${v.met ? 'met' : 'NOT met'}`);
console.log(`output-commit stall (record-mode send minus pass-through send), p50: ${fmt((r.record!.sendP50Ns! - r.passthrough!.sendP50Ns!) / 1000)} us, p99: ${fmt((r.record!.sendP99Ns! - r.passthrough!.sendP99Ns!) / 1000)} us`);
const out = join(root, 'bench/results/nsw.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), machine: { cpus: cpus().length }, results, targets }, null, 2) + '\n');
console.log(`\nwritten to ${out}`);
