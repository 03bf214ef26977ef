/**
 * Child process of the NFQUEUE test: runs inside the test's network
 * namespace (NFQUEUE sockets belong to a namespace), so it is started with
 * `ip netns exec`. It binds the queue, runs a TCP echo server and a client
 * on loopback whose segments all pass through a SouthSideWrap in record
 * mode (stable-seq advanced as if the buffer logged each client segment at
 * once), injects one marked packet through the raw socket, and prints one
 * JSON line of results.
 *
 * argv: port queue scenario, scenario `plain` (zero deltas), `deltas`
 * (the connection is promoted with non-zero seq, ack and timestamp deltas,
 * so every segment both ways is rewritten and must still make a working
 * connection) or `lagging` (the buffer acknowledges 3 ms late, so acks are
 * clamped and windows compensated, and eager ACKs are crafted and injected).
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { advanceStable, markHandshakeStable, promote } from '../../src/conntable.js';
import { NfQueue, RawInjector } from '../../src/nfqueue.js';
import { ackIsDue, craftAck } from '../../src/craft.js';
import { seqDelta, seqGt } from '../../src/wire/seq.js';
import { parseTcpPacket, verifyTcpChecksum } from '../../src/wire/tcp.js';
import type { TcpPacket } from '../../src/wire/tcp.js';
import { SouthSideWrap } from '../../src/wrap.js';
import { buildPacket } from './builder.js';
import { INJECT_MARK, VERDICT_MARK } from './marks.js';


const [portArg, queueArg, scenario] = process.argv.slice(2);
const port = Number(portArg);
const queueNum = Number(queueArg);
const BYTES = 2 * 1024 * 1024;
// SSW_DEBUG=1 prints every packet before and after the wrap to stderr.
const debug = process.env['SSW_DEBUG'] === '1';
const describe = (t: TcpPacket): string =>
  `flags=${t.flags.toString(16)} seq=${t.seq} ack=${t.ack} win=${t.window} len=${t.payloadLength} ts=${t.options.tsVal}/${t.options.tsEcr}`;

const wrap = new SouthSideWrap({
  mode: 'record',
  onOpen(conn) {
    // As if a backup had rebuilt the connection: every field both ways is mapped.
    if (scenario === 'deltas') promote(conn, { seqDelta: seqDelta(0x7654321), ackDelta: seqDelta(-0x123456), tsOffset: 0x40000000 });
    // promote() marks a handshake stable; this one is not logged yet.
    conn.handshakeStable = false;
  },
});
const stats = { batches: 0, crafted: 0, ackBeyondStable: 0, packets: 0, incoming: 0, outgoing: 0, modified: 0, partial: 0, gso: 0, badChecksum: 0, drops: {} as Record<string, number> };

const injector = new RawInjector(INJECT_MARK);
let finished = false;
const queue = NfQueue.open({
  queue: queueNum,
  onPackets(packets) {
    // Unchanged accepts are deferred and given in one batch verdict, as a
    // fast path would; any other verdict flushes them first (order matters).
    let pendingThrough = -1;
    const flush = (): void => {
      if (pendingThrough >= 0) queue.acceptThrough(pendingThrough, { mark: VERDICT_MARK });
      if (pendingThrough >= 0) stats.batches++;
      pendingThrough = -1;
    };
    for (const p of packets) {
      stats.packets++;
      if (p.checksumPartial) stats.partial++;
      if (p.gso) stats.gso++;
      const r = parseTcpPacket(p.payload, { allowTruncated: true });
      const incoming = r.ok && r.packet.dstPort === port;
      const before = debug && r.ok ? describe(r.packet) : '';
      const v = incoming ? wrap.incoming(p.payload, p) : wrap.outgoing(p.payload, p);
      if (debug) process.stderr.write(`${incoming ? 'in ' : 'out'} ${before} -> ${v.verdict} ${v.verdict === 'accept' && v.packet ? describe(v.packet) : ''}\n`);
      if (incoming) stats.incoming++;
      else stats.outgoing++;
      if (v.verdict === 'accept') {
        if (incoming && v.conn !== undefined) {
          // The "buffer" logs the connection record at once.
          if (!v.conn.handshakeStable) markHandshakeStable(v.conn);
          if (v.log && v.end !== undefined) {
            const conn = v.conn;
            const end = v.end;
            if (scenario === 'lagging') {
              // The "buffer" acknowledges 3 ms later; then an eager ACK tells the client.
              setTimeout(() => {
                if (finished) return;
                advanceStable(conn, end);
                if (ackIsDue(conn)) {
                  injector.send(craftAck(conn));
                  stats.crafted++;
                }
              }, 3);
            } else {
              // The "buffer" logs every client segment at once.
              advanceStable(conn, end);
            }
          }
        }
        if (v.packet !== undefined && !verifyTcpChecksum(v.packet)) stats.badChecksum++;
        // DESIGN invariant 1, checked on the bytes that leave.
        if (!incoming && v.conn !== undefined && v.packet !== undefined && seqGt(v.packet.ack, v.conn.stableSeq)) stats.ackBeyondStable++;
        if (v.modified) stats.modified++;
        if (v.modified) {
          flush();
          queue.accept(p.id, { mark: VERDICT_MARK, payload: p.payload });
        } else {
          pendingThrough = p.id;
        }
      } else {
        const reason = v.reason;
        stats.drops[reason] = (stats.drops[reason] ?? 0) + 1;
        flush();
        queue.drop(p.id);
      }
    }
    flush();
  },
});

async function transfer(): Promise<{ sent: string; echoed: string }> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const data = randomBytes(BYTES);
  const echoed = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const c = net.connect(port, '127.0.0.1', () => c.end(data));
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
    });
    c.on('end', () => resolve(Buffer.concat(chunks, got)));
    c.on('error', reject);
  });
  server.close();
  const hash = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  return { sent: hash(data), echoed: hash(echoed) };
}

async function main(): Promise<void> {
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ error: 'timeout', stats, counters: wrap.counters }) + '\n');
    queue.close();
    process.exit(2);
  }, 15000);
  const result = await transfer();
  // A bare ACK to a port nobody listens on: the kernel answers with a RST.
  const sentBytes = injector.send(buildPacket({ src: 0x7f000001, dst: 0x7f000001, srcPort: 1, dstPort: port + 1, flags: 0x10 }));
  finished = true;
  injector.close();
  clearTimeout(timer);
  // A second bind of the same queue number must fail with a clear code.
  let duplicateOpen = 'opened';
  try {
    NfQueue.open({ queue: queueNum, onPackets: () => undefined }).close();
  } catch (err) {
    duplicateOpen = (err as { code?: string }).code ?? String(err);
  }
  const queueStats = queue.stats();
  queue.close();
  process.stdout.write(JSON.stringify({ ...result, stats, counters: wrap.counters, injected: sentBytes, queueStats, duplicateOpen }) + '\n');
}

main().catch((err: unknown) => {
  queue.close();
  process.stdout.write(JSON.stringify({ error: String(err) }) + '\n');
  process.exit(1);
});
