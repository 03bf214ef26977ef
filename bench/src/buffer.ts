/**
 * Buffer benchmark (issue 2): records/s and acknowledgement latency for 100 B,
 * 1460 B and 64 KiB segment records at each durability, one at a time and
 * pipelined, against a plain ZeroMQ round trip.
 *
 * The baseline is the same exchange without the buffer: a DEALER in this
 * process and a ROUTER in a child process (like the buffer), with the
 * buffer's socket options, sending exactly the frame a record of that size
 * travels in and answered with a frame of the acknowledgement's size. Its
 * round trips are interleaved with the buffer's, block by block, so both see
 * the same load on a shared host; every one-at-a-time row is compared with
 * the baseline measured alongside it.
 *
 * Writes bench/results/buffer.json and prints a table.
 * Usage: node bench/dist/src/buffer.js [--quick]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Dealer } from 'zeromq';
import { StableBufferClient, encodeFrame } from '@ftcp/stable-buffer';
import { fmt, quantile, table } from './stats.js';
import { spawnReady, stop } from './spawn.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const ftcp = join(root, 'bin/ftcp');
const quick = process.argv.includes('--quick');

const SIZES = [100, 1460, 65536];
const DURABILITIES = ['memory', 'commit', 'fsync'] as const;
const WINDOW = 256;
const WARMUP = quick ? 2000 : 10_000;
/** One-at-a-time writes alternate with baseline round trips in blocks of this many. */
const BLOCK_SMALL = 100;
const BLOCK_64K = 10;

/** The options StableBufferClient gives its DEALER (src/client.ts): neither side of the comparison has other sockets. */
const DEALER_OPTIONS = { linger: 0, reconnectInterval: 20, reconnectMaxInterval: 200, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 };

/** The frame a segment record of `size` bytes travels in. */
const segmentFrame = (size: number): Buffer => encodeFrame({ kind: 'segment', epoch: 1, connId: 1, offset: 0, flags: 0, payload: Buffer.alloc(size, 0x5a) }, 1);
const ACK_BYTES = encodeFrame({ kind: 'ack-segment', connId: 1, stableOffset: 0, stableSeq: 0 }, 1).length;

interface Row {
  durability: string;
  size: number;
  mode: 'one-at-a-time' | 'pipelined';
  records: number;
  recordsPerSec: number;
  ackP50Us: number;
  ackP99Us: number;
  /** The plain ZeroMQ round trip measured alongside (one-at-a-time rows only). */
  zmqP50Us?: number;
  zmqP99Us?: number;
}

/** The plain ZeroMQ exchange the buffer is compared with. */
class Baseline {
  private constructor(
    private readonly child: Awaited<ReturnType<typeof spawnReady>>['child'],
    private readonly dealer: Dealer,
    private readonly frames: Map<number, Buffer>,
  ) {}

  static async start(): Promise<Baseline> {
    const echo = await spawnReady('node', [join(here, 'zmq-echo.js'), 'tcp://127.0.0.1:0', String(ACK_BYTES)]);
    const dealer = new Dealer(DEALER_OPTIONS);
    dealer.connect(echo.endpoint);
    const b = new Baseline(echo.child, dealer, new Map(SIZES.map((s) => [s, segmentFrame(s)])));
    for (const s of SIZES) await b.roundTrips(s, s >= 65536 ? 50 : 300, []);
    return b;
  }

  /** `n` round trips with the request of a `size`-byte record; latencies (us) go to `into`. */
  async roundTrips(size: number, n: number, into: number[]): Promise<void> {
    const frame = this.frames.get(size)!;
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await this.dealer.send(frame);
      await this.dealer.receive();
      into.push((performance.now() - t0) * 1000);
    }
  }

  async stop(): Promise<void> {
    this.dealer.close();
    await stop(this.child);
  }
}

const connRecord = (id: number) => ({
  connId: id, clientIp: 1, serverIp: 2, clientPort: id, serverPort: 80, clientIsn: 0, serverIsn: 0, mss: 1460,
  clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: true, clientTsval: 0, serverTsval: 0,
});

async function measure(durability: string, baseline: Baseline): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ftcp-bench-buf-'));
  const buf = await spawnReady(ftcp, ['buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dir, '--durability', durability, '--log-level', 'error', '--max-log-bytes', '64GiB']);
  const c = StableBufferClient.connect({ endpoint: buf.endpoint, node: 'bench-primary', requestTimeoutMs: 30_000 });
  const rows: Row[] = [];
  try {
    await c.attachAsWriter();
    let connId = 1;
    // Warm up (JIT, socket buffers, LMDB map) before anything is measured:
    // the buffer is a fresh process, and with 2000 writes its JIT was still
    // at work through the first measured row (100 B came out ~10% slower
    // than 1460 B). A primary's buffer runs for days; steady state is what counts.
    const warm = connId++;
    await c.writeConn(connRecord(warm));
    for (let i = 0; i < WARMUP; i++) await c.writeSegment({ connId: warm, offset: i * 100, flags: 0, payload: Buffer.alloc(100) });
    for (const size of SIZES) {
      const payload = Buffer.alloc(size, 0x5a);
      const base = size >= 65536 ? 200 : 2000;
      const one = quick ? base / 4 : base;
      const piped = quick ? base / 2 : base * 10;
      const block = size >= 65536 ? BLOCK_64K : BLOCK_SMALL;
      // One at a time, in blocks alternating with the baseline's round trips.
      let id = connId++;
      await c.writeConn(connRecord(id));
      const lat: number[] = [];
      const zmq: number[] = [];
      for (let i = 0; i < one; ) {
        await baseline.roundTrips(size, Math.min(block, one - i), zmq);
        for (const end = Math.min(i + block, one); i < end; i++) {
          const s = performance.now();
          await c.writeSegment({ connId: id, offset: i * size, flags: 0, payload });
          lat.push((performance.now() - s) * 1000);
        }
      }
      const busySecs = lat.reduce((a, b) => a + b, 0) / 1e6;
      rows.push({
        durability, size, mode: 'one-at-a-time', records: one, recordsPerSec: one / busySecs,
        ackP50Us: quantile(lat, 0.5), ackP99Us: quantile(lat, 0.99), zmqP50Us: quantile(zmq, 0.5), zmqP99Us: quantile(zmq, 0.99),
      });
      // Pipelined: keep WINDOW writes in flight.
      id = connId++;
      await c.writeConn(connRecord(id));
      const plat: number[] = [];
      const t0 = performance.now();
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
      const secs = (performance.now() - t0) / 1000;
      rows.push({ durability, size, mode: 'pipelined', records: piped, recordsPerSec: piped / secs, ackP50Us: quantile(plat, 0.5), ackP99Us: quantile(plat, 0.99) });
    }
  } finally {
    c.close();
    await stop(buf.child);
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

const loadBefore = loadavg()[0]!;
const baseline = await Baseline.start();
const rows: Row[] = [];
try {
  for (const d of DURABILITIES) rows.push(...(await measure(d, baseline)));
} finally {
  await baseline.stop();
}

const find = (d: string, size: number, mode: Row['mode']) => rows.find((r) => r.durability === d && r.size === size && r.mode === mode)!;
const ratio = (r: Row) => r.ackP50Us / r.zmqP50Us!;
const targets: Record<string, { value: number; target: string; met: boolean }> = {};
for (const size of SIZES) {
  const v = ratio(find('memory', size, 'one-at-a-time'));
  targets[`memoryAckP50VsZmq${size}B`] = { value: v, target: '<= 1.5', met: v <= 1.5 };
}
const mem = find('memory', 1460, 'pipelined').recordsPerSec;
const com = find('commit', 1460, 'pipelined').recordsPerSec;
targets.memoryPipelined1460PerSec = { value: mem, target: '>= 50000', met: mem >= 50_000 };
targets.commitPipelined1460PerSec = { value: com, target: '>= 30000', met: com >= 30_000 };

console.log(`plain ZeroMQ round trip: the record's frame out, ${ACK_BYTES} B back, DEALER here and ROUTER in a child process, interleaved with each one-at-a-time row\n`);
console.log(
  table(
    ['durability', 'size', 'mode', 'records', 'records/s', 'ack p50 us', 'ack p99 us', 'zmq p50 us', 'zmq p99 us', 'p50 / zmq'],
    rows.map((r) => [
      r.durability, r.size, r.mode, r.records, Math.round(r.recordsPerSec), fmt(r.ackP50Us), fmt(r.ackP99Us),
      fmt(r.zmqP50Us ?? Number.NaN), fmt(r.zmqP99Us ?? Number.NaN), r.zmqP50Us === undefined ? '-' : fmt(ratio(r), 2),
    ]),
  ),
);
console.log('\ntargets:');
for (const [k, v] of Object.entries(targets)) console.log(`  ${k}: ${fmt(v.value, 2)} (${v.target}) ${v.met ? 'met' : 'NOT met'}`);

const zmqBaseline = Object.fromEntries(
  SIZES.map((s) => {
    const r = find('memory', s, 'one-at-a-time');
    return [s, { requestBytes: segmentFrame(s).length, replyBytes: ACK_BYTES, p50Us: r.zmqP50Us, p99Us: r.zmqP99Us }];
  }),
);
const out = join(root, 'bench/results/buffer.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify({ date: new Date().toISOString(), quick, machine: { cpus: cpus().length, loadAvg1mBefore: loadBefore, loadAvg1mAfter: loadavg()[0] }, zmqBaseline, rows, targets }, null, 2) + '\n',
);
console.log(`\nwritten to ${out}`);
