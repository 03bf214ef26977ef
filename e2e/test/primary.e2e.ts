import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FTCP_BIN, TcpFlag, Testbed, hasFlag, nextPort, startPeer, type HostProcess } from '../src/index.js';

describe('ftcp primary', function () {
  this.timeout(120_000);
  let bed: Testbed | undefined;
  let dataDir: string;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
    dataDir = mkdtempSync(join(tmpdir(), 'ftcp-e2e-primary-'));
  });
  afterEach(async () => {
    await bed?.destroy();
    bed = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(): Promise<{ bed: Testbed; endpoint: string; port: number; primary: HostProcess }> {
    const b = await Testbed.create();
    bed = b;
    const endpoint = `tcp://${b.host('backup').replicaAddr}:${nextPort()}`;
    const port = nextPort();
    const buffer = b.spawn('backup', FTCP_BIN, ['buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory', '--probe-interval', '10', '--failure-timeout', '30', '--log-level', 'warn']);
    await buffer.waitForLine((l) => l.includes('"ready"'), 15_000);
    const primary = b.spawn('primary', FTCP_BIN, [
      'primary', '--service', `${b.vip}:${port}`, '--buffer', endpoint, '--iface', 'lan0', '--node', 'primary-a', '--log-level', 'warn',
      '--', 'redis-server', '--port', String(port), '--bind', b.vip, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ]);
    await primary.waitForLine((l) => l.includes('"ready"'), 20_000);
    // redis is up once it answers through the wrap.
    for (let i = 0; i < 100; i++) {
      const r = await b.exec('client', 'redis-cli', ['-h', b.vip, '-p', String(port), 'PING']).catch(() => ({ stdout: '' }));
      if (r.stdout.trim() === 'PONG') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    return { bed: b, endpoint, port, primary };
  }

  it('serves an unmodified redis through both wraps and logs its connection and calls to the buffer', async () => {
    const { bed: b, endpoint, port } = await start();
    const r = await b.exec('client', 'sh', ['-c', `for i in $(seq 1 1000); do echo INCR counter; done | redis-cli -h ${b.vip} -p ${port}`]);
    const replies = r.stdout.trim().split('\n').map(Number);
    expect(replies).to.deep.equal(Array.from({ length: 1000 }, (_, i) => i + 1));
    const status = JSON.parse((await b.exec('backup', FTCP_BIN, ['status', '--json', '--buffer', endpoint])).stdout) as {
      epoch: number;
      connections: { stableOffset: number }[];
      streams: { stream: string; lastCallNo: number }[];
      nodes: { node: string; report: Record<string, number | string> }[];
    };
    expect(status.epoch).to.equal(1);
    // The PING probes and the INCR session: each connection's bytes were logged, the FIN too.
    expect(status.connections.length).to.be.at.least(2);
    // 1000 commands in RESP (27 bytes each) plus the FIN, at least.
    expect(Math.max(...status.connections.map((c) => c.stableOffset))).to.be.at.least(27 * 1000 + 1);
    expect(status.streams.some((s) => s.lastCallNo > 100)).to.equal(true);
    await new Promise((res) => setTimeout(res, 600));
    const again = JSON.parse((await b.exec('backup', FTCP_BIN, ['status', '--json', '--buffer', endpoint])).stdout) as typeof status;
    expect(again.nodes.find((n) => n.node === 'primary-a')?.report.mode).to.equal('record');
  });

  it('goes quiet when it loses the buffer (VIP given up, no FIN or RST) and resumes when the buffer is back with nobody promoted', async () => {
    const { bed: b, port, primary } = await start();
    const client = startPeer(b, 'client', ['connect', '--host', b.vip, '--port', String(port), '--mode', 'interactive']);
    // An open connection: killing its server would make the kernel send a FIN.
    await client.waitForEvent('connected', 5000);
    const cap = await b.capture('client');
    const cutAt = Date.now();
    await b.partitionReplica('silent');
    await primary.waitForLine((l) => l.includes('"quiet"'), 5000, 'stderr');
    const quietMs = Date.now() - cutAt;
    expect(quietMs).to.be.lessThan(2000);
    const addrs = await b.exec('primary', 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'lan0']);
    expect(addrs.stdout).to.not.include(`${b.vip}/`);
    await new Promise((res) => setTimeout(res, 300));
    await b.healReplica();
    await primary.waitForLine((l) => l.includes('"resumed"'), 15_000, 'stderr');
    const pcap = await cap.stop();
    const fromServer = pcap.segments.filter((s) => s.src === b.vip && s.srcPort === port && s.time * 1000 >= cutAt);
    expect(fromServer.filter((s) => hasFlag(s, TcpFlag.FIN) || hasFlag(s, TcpFlag.RST)), 'FIN or RST after the cut').to.have.length(0);
    // Serving again, on the same epoch: a new connection works and the old one was never closed.
    const r = await b.exec('client', 'redis-cli', ['-h', b.vip, '-p', String(port), 'PING']);
    expect(r.stdout.trim()).to.equal('PONG');
    expect(client.events().filter((e) => e.ev === 'close' || e.ev === 'error' || e.ev === 'end')).to.have.length(0);
    expect(primary.child.exitCode).to.equal(null);
    console.log(`      quiet ${quietMs} ms after the cut; resumed after the heal`);
  });
});
