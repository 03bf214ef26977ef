/**
 * Buffer benchmark (issue 2): records/s and acknowledgement latency for 100 B,
 * 1460 B and 64 KiB segment records at each durability, one at a time and
 * pipelined, against a plain ZeroMQ round trip measured in the same run and
 * the same process tree (echo server in a child process, like the buffer).
 *
 * Writes bench/results/buffer.json and prints a table.
 * Usage: node bench/dist/src/buffer.js [--quick]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Dealer } from 'zeromq';
import { StableBufferClient } from '@ftcp/stable-buffer';
import { fmt, quantile, table } from './stats.js';
import { spawnReady, stop } from './spawn.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const ftcp = join(root, 'bin/ftcp');
const quick = process.argv.includes('--quick');

const SIZES = [100, 1460, 65536];
const DURABILITIES = ['memory', 'commit', 'fsync'] as const;
const WINDOW = 256;

interface Row {
  durability: string;
  size: number;
  mode: 'one-at-a-time' | 'pipelined';
  records: number;
  recordsPerSec: number;
  ackP50Us: number;
  ackP99Us: number;
}

async function zmqBaseline(): Promise<{ p50Us: number; p99Us: number }> {
  const echo = await spawnReady('node', [join(here, 'zmq-echo.js'), 'tcp://127.0.0.1:0']);
  const d = new Dealer({ linger: 0 });
  d.connect(echo.endpoint);
  const frame = Buffer.alloc(100 + 12, 7);
  const rtts: number[] = [];
  const n = quick ? 500 : 3000;
  for (let i = 0; i < n + 100; i++) {
    const t0 = performance.now();
    await d.send(frame);
    await d.receive();
    if (i >= 100) rtts.push((performance.now() - t0) * 1000);
  }
  d.close();
  await stop(echo.child);
  return { p50Us: quantile(rtts, 0.5), p99Us: quantile(rtts, 0.99) };
}

async function measure(durability: string): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ftcp-bench-buf-'));
  const buf = await spawnReady(ftcp, ['buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dir, '--durability', durability, '--log-level', 'error', '--max-log-bytes', '64GiB']);
  const c = StableBufferClient.connect({ endpoint: buf.endpoint, node: 'bench-primary', requestTimeoutMs: 30_000 });
  const rows: Row[] = [];
  try {
    await c.attachAsWriter();
    let connId = 1;
    // Warm up (JIT, socket buffers, LMDB map) before anything is measured.
    const warm = connId++;
    await c.writeConn({ connId: warm, clientIp: 1, serverIp: 2, clientPort: warm, serverPort: 80, clientIsn: 0, serverIsn: 0, mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: true, clientTsval: 0, serverTsval: 0 });
    for (let i = 0; i < 2000; i++) await c.writeSegment({ connId: warm, offset: i * 100, flags: 0, payload: Buffer.alloc(100) });
    for (const size of SIZES) {
      const payload = Buffer.alloc(size, 0x5a);
      const base = size >= 65536 ? 200 : 2000;
      const one = quick ? base / 4 : base;
      const piped = (quick ? base / 2 : base * 10) ;
      // One at a time.
      let id = connId++;
      await c.writeConn({ connId: id, clientIp: 1, serverIp: 2, clientPort: id, serverPort: 80, clientIsn: 0, serverIsn: 0, mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: true, clientTsval: 0, serverTsval: 0 });
      const lat: number[] = [];
      let t0 = performance.now();
      for (let i = 0; i < one; i++) {
        const s = performance.now();
        await c.writeSegment({ connId: id, offset: i * size, flags: 0, payload });
        lat.push((performance.now() - s) * 1000);
      }
      let secs = (performance.now() - t0) / 1000;
      rows.push({ durability, size, mode: 'one-at-a-time', records: one, recordsPerSec: one / secs, ackP50Us: quantile(lat, 0.5), ackP99Us: quantile(lat, 0.99) });
      // Pipelined: keep WINDOW writes in flight.
      id = connId++;
      await c.writeConn({ connId: id, clientIp: 1, serverIp: 2, clientPort: id, serverPort: 80, clientIsn: 0, serverIsn: 0, mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: true, clientTsval: 0, serverTsval: 0 });
      const plat: number[] = [];
      t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        let sent = 0;
        let done = 0;
        const next = () => {
          while (sent < piped && sent - done < WINDOW) {
            const i = sent++;
            const s = performance.now();
            c.writeSegment({ connId: id, offset: i * size, flags: 0, payload }).then(() => {
              plat.push((performance.now() - s) * 1000);
              done++;
              if (done === piped) resolve();
              else next();
            }, reject);
          }
        };
        next();
      });
      secs = (performance.now() - t0) / 1000;
      rows.push({ durability, size, mode: 'pipelined', records: piped, recordsPerSec: piped / secs, ackP50Us: quantile(plat, 0.5), ackP99Us: quantile(plat, 0.99) });
    }
  } finally {
    c.close();
    await stop(buf.child);
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

const baseline = await zmqBaseline();
const rows: Row[] = [];
for (const d of DURABILITIES) rows.push(...(await measure(d)));

const find = (d: string, size: number, mode: Row['mode']) => rows.find((r) => r.durability === d && r.size === size && r.mode === mode)!;
const memoryP50Ratio = find('memory', 100, 'one-at-a-time').ackP50Us / baseline.p50Us;
const targets = {
  memoryAckP50VsZmq: { value: memoryP50Ratio, target: '<= 1.5', met: memoryP50Ratio <= 1.5 },
  memoryPipelined1460PerSec: { value: find('memory', 1460, 'pipelined').recordsPerSec, target: '>= 50000', met: find('memory', 1460, 'pipelined').recordsPerSec >= 50_000 },
  commitPipelined1460PerSec: { value: find('commit', 1460, 'pipelined').recordsPerSec, target: '>= 30000', met: find('commit', 1460, 'pipelined').recordsPerSec >= 30_000 },
};

console.log(`plain ZeroMQ round trip (100 B, echo in a child process): p50 ${fmt(baseline.p50Us)} us, p99 ${fmt(baseline.p99Us)} us\n`);
console.log(
  table(
    ['durability', 'size', 'mode', 'records', 'records/s', 'ack p50 us', 'ack p99 us', 'p50 / zmq'],
    rows.map((r) => [r.durability, r.size, r.mode, r.records, Math.round(r.recordsPerSec), fmt(r.ackP50Us), fmt(r.ackP99Us), fmt(r.ackP50Us / baseline.p50Us, 2)]),
  ),
);
console.log('\ntargets:');
for (const [k, v] of Object.entries(targets)) console.log(`  ${k}: ${fmt(v.value, 2)} (${v.target}) ${v.met ? 'met' : 'NOT met'}`);

const out = join(root, 'bench/results/buffer.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), quick, machine: { cpus: (await import('node:os')).cpus().length }, zmqBaseline: baseline, rows, targets }, null, 2) + '\n');
console.log(`\nwritten to ${out}`);
