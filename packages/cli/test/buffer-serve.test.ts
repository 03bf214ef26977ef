import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableBufferClient } from '@ftcp/stable-buffer';

const ftcp = join(dirname(fileURLToPath(import.meta.url)), '../../../../bin/ftcp');

/** A loopback port that was free a moment ago. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts `ftcp buffer serve` and resolves once it printed its ready line. */
async function serve(args: string[]): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = spawn(ftcp, ['buffer', 'serve', '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ready line within 15 s; stderr: ${err}`)), 15_000);
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(t);
        resolve({ child, endpoint: (JSON.parse(line) as { endpoint: string }).endpoint });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`exited ${code} before ready; stderr: ${err}`));
    });
  });
}

describe('ftcp buffer serve', function () {
  this.timeout(60_000);
  let dir: string;
  const children: ChildProcess[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-serve-'));
  });
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('teaches its flags and durability levels in --help', () => {
    const r = spawnSync(ftcp, ['buffer', 'serve', '--help'], { encoding: 'utf8' });
    expect(r.status).to.equal(0);
    for (const word of ['--listen', '--data-dir', '--durability', '--probe-interval', '--failure-timeout', 'fsync', 'EXAMPLES']) {
      expect(r.stdout).to.include(word);
    }
  });

  it('rejects a bad durability with exit code 2 and names the choices', () => {
    const r = spawnSync(ftcp, ['buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dir, '--durability', 'eventually'], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    const text = r.stderr.replace(/\s*›\s*/g, ' ');
    expect(text).to.include('--durability');
    expect(text).to.include('memory, commit, fsync');
  });

  it('exits 3 with a suggestion when the port is taken', async () => {
    const first = await serve(['--listen', 'tcp://127.0.0.1:0', '--data-dir', dir]);
    children.push(first.child);
    const second = mkdtempSync(join(tmpdir(), 'ftcp-serve-'));
    const r = spawnSync(ftcp, ['buffer', 'serve', '--listen', first.endpoint, '--data-dir', second], { encoding: 'utf8' });
    rmSync(second, { recursive: true, force: true });
    expect(r.status).to.equal(3);
    expect(r.stderr).to.include('cannot listen');
    expect(r.stderr).to.include('Try this');
  });

  it('shows nodes, backups and connections in ftcp status, and all of it with --json', async () => {
    const { child, endpoint } = await serve(['--listen', 'tcp://127.0.0.1:0', '--data-dir', dir]);
    children.push(child);
    const p = StableBufferClient.connect({ endpoint, node: 'primary-a' });
    try {
      await p.attachAsWriter();
      await p.writeConn({ connId: 9, clientIp: 1, serverIp: 2, clientPort: 3, serverPort: 4, clientIsn: 100, serverIsn: 200, mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: false, clientTsval: 0, serverTsval: 0 });
      await p.writeSegment({ connId: 9, offset: 0, flags: 0, payload: Buffer.from('abc') });
      p.report('primary', { mode: 'record', stableSeqLag: 0, unstableRecords: 0 });
      await p.ping();
      const human = spawnSync(ftcp, ['status', '--buffer', endpoint], { encoding: 'utf8' });
      expect(human.status, human.stderr).to.equal(0);
      expect(human.stdout).to.include('epoch 1 (owner primary-a), primary attached');
      expect(human.stdout).to.include('primary-a [primary]');
      expect(human.stdout).to.include('mode=record');
      expect(human.stdout).to.include('9: stable offset 3');
      const json = spawnSync(ftcp, ['status', '--json'], { encoding: 'utf8', env: { ...process.env, FTCP_BUFFER: endpoint } });
      expect(json.status, json.stderr).to.equal(0);
      const parsed = JSON.parse(json.stdout) as { epoch: number; nodes: { node: string }[] };
      expect(parsed.epoch).to.equal(1);
      expect(parsed.nodes.map((n) => n.node)).to.deep.equal(['primary-a']);
    } finally {
      p.close();
    }
  });

  it('says what to try when ftcp status cannot reach the buffer', () => {
    const r = spawnSync(ftcp, ['status', '--buffer', 'tcp://127.0.0.1:9', '--timeout', '300'], { encoding: 'utf8' });
    expect(r.status).to.equal(3);
    expect(r.stderr).to.include('FTCP_ERR_TIMEOUT');
    expect(r.stderr).to.include('FTCP_BUFFER');
  });

  it('refuses a second buffer on the same data directory, and starts after the first was killed', async () => {
    const first = await serve(['--listen', 'tcp://127.0.0.1:0', '--data-dir', dir]);
    children.push(first.child);
    const second = spawnSync(ftcp, ['buffer', 'serve', '--listen', 'tcp://127.0.0.1:0', '--data-dir', dir], { encoding: 'utf8', timeout: 15_000 });
    expect(second.status).to.equal(3);
    expect(second.stderr).to.include(`in use by process ${first.child.pid}`);
    const gone = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await gone;
    const third = await serve(['--listen', 'tcp://127.0.0.1:0', '--data-dir', dir]);
    children.push(third.child);
    expect(third.endpoint).to.match(/^tcp:/);
  });

  it('stops cleanly with exit code 0 on SIGTERM', async () => {
    const { child } = await serve(['--listen', 'tcp://127.0.0.1:0', '--data-dir', dir]);
    children.push(child);
    const exited = new Promise<string>((r) => child.once('exit', (code, signal) => r(`${code}/${signal}`)));
    child.kill('SIGTERM');
    expect(await exited).to.equal('0/null');
  });

  it('has every record it acknowledged under commit after SIGKILL and a restart', async () => {
    const port = await freePort();
    const listen = `tcp://127.0.0.1:${port}`;
    const first = await serve(['--listen', listen, '--data-dir', dir, '--durability', 'commit']);
    children.push(first.child);
    const p = StableBufferClient.connect({ endpoint: listen, node: 'primary' });
    await p.attachAsWriter();
    await p.writeConn({ connId: 1, clientIp: 1, serverIp: 2, clientPort: 3, serverPort: 4, clientIsn: 100, serverIsn: 200, mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: false, clientTsval: 0, serverTsval: 0 });
    let ackedOffset = 0;
    let ackedCall = 0;
    const chunk = (i: number) => Buffer.alloc(1000, i & 0xff);
    // Keep up to 256 writes in flight; once acknowledgements flow, SIGKILL the
    // buffer with writes still in flight.
    let inflight = 0;
    let i = 0;
    const deadline = performance.now() + 20_000;
    for (;;) {
      const enough = ackedOffset >= 500_000 || performance.now() > deadline;
      while (inflight < 256) {
        const n = i++;
        inflight += 2;
        void p.writeSegment({ connId: 1, offset: n * 1000, flags: 0, payload: chunk(n) }).then(
          (a) => void (ackedOffset = Math.max(ackedOffset, a.stableOffset)),
          () => {},
        ).finally(() => inflight--);
        void p.writeCall({ stream: 'p0', callNo: n + 1, data: Buffer.from(String(n)) }).then(
          (c) => void (ackedCall = Math.max(ackedCall, c)),
          () => {},
        ).finally(() => inflight--);
      }
      if (enough) break;
      await new Promise((r) => setTimeout(r, 1));
    }
    // Writes were just issued: some are surely not acknowledged yet.
    first.child.kill('SIGKILL');
    expect(p.unacknowledged, 'writes in flight at the kill').to.be.greaterThan(0);
    const ackedBeforeKill = { offset: ackedOffset, call: ackedCall };
    p.close();
    expect(ackedBeforeKill.offset).to.be.greaterThan(0);
    const second = await serve(['--listen', listen, '--data-dir', dir, '--durability', 'commit']);
    children.push(second.child);
    const r = StableBufferClient.connect({ endpoint: listen, node: 'reader' });
    try {
      const data = await r.readInstream(1, 0, ackedBeforeKill.offset);
      for (let i = 0; i * 1000 < ackedBeforeKill.offset; i++) expect(data[i * 1000]).to.equal(i & 0xff);
      const calls = await r.readCalls('p0', 1, 10_000);
      expect(calls.length).to.be.at.least(ackedBeforeKill.call);
      calls.forEach((c, i) => expect(c.data.toString()).to.equal(String(i)));
    } finally {
      r.close();
    }
  });
});
