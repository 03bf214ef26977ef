import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const nfqueueModule = fileURLToPath(new URL('../src/nfqueue.js', import.meta.url));

describe('NfQueue.close', function () {
  this.timeout(30_000);
  const ns = `ftcp-ssw-close-${process.pid}`;
  const port = 21000 + (process.pid % 20000);
  const queue = 2000 + (process.pid % 1000);

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--dport', String(port), '-j', 'NFQUEUE', '--queue-num', String(queue)]);
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('closes cleanly while packets are still waiting on its socket (a primary stepping down)', () => {
    // In a child, because the bug this guards against aborted the process:
    // packets arrive while the event loop is blocked, so close() meets them.
    const script = `
      const { NfQueue } = await import(${JSON.stringify(nfqueueModule)});
      const net = await import('node:net');
      const q = NfQueue.open({ queue: ${queue}, onPackets: () => {} });
      for (let i = 0; i < 20; i++) net.connect({ host: '127.0.0.1', port: ${port} }).on('error', () => {});
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      q.close();
      console.log('closed');
      process.exit(0);`;
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal, r.stderr.slice(0, 2000)).to.equal(null);
    expect(r.status, r.stderr.slice(0, 2000)).to.equal(0);
    expect(r.stdout).to.include('closed');
  });
});
