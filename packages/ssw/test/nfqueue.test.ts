import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isFtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from '../src/errors.js';
import { NfQueue, RawInjector } from '../src/nfqueue.js';
import { INJECT_MARK, VERDICT_MARK } from './support/marks.js';

const HARNESS = fileURLToPath(new URL('./support/nfq-harness.js', import.meta.url));
const isRoot = process.getuid?.() === 0;

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
}

/** Packet count of the first rule in `table`/`chain` whose text includes `needle`. */
function ruleCount(ns: string, table: string, chain: string, needle: string): number {
  const out = sh('ip', 'netns', 'exec', ns, 'iptables', '-t', table, '-L', chain, '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(needle));
  if (line === undefined) throw new Error(`no rule with ${needle} in ${table}/${chain}:\n${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

interface HarnessResult {
  sent?: string;
  echoed?: string;
  error?: string;
  stats: { batches: number; crafted: number; ackBeyondStable: number; packets: number; incoming: number; outgoing: number; modified: number; badChecksum: number; drops: Record<string, number> };
  counters: { malformedTotal: number; unknownConnection: number; truncatedDropped: number };
  injected: number;
  duplicateOpen: string;
}

function runHarness(ns: string, port: number, queue: number, scenario: string): Promise<HarnessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, HARNESS, String(port), String(queue), scenario], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as HarnessResult);
      } catch {
        reject(new Error(`harness said: ${out}\n${err}`));
      }
    });
  });
}

describe('NfQueue (root, in a network namespace)', function () {
  const ns = `ftcp-ssw-${process.pid}`;
  const port = 20000 + (process.pid % 20000);
  const queue = 100 + (process.pid % 1000);

  before(function () {
    if (!isRoot) this.skip();
    sh('ip', 'netns', 'add', ns);
    const nsx = (...args: string[]): string => sh('ip', 'netns', 'exec', ns, ...args);
    // NFQUEUE copies at most 65531 bytes; keep every packet below that (MTU
    // for single segments, gso/gro_max_size for super-packets) so each one
    // can be rewritten whole (see PacketMeta.truncatedOk).
    nsx('ip', 'link', 'set', 'lo', 'mtu', '16384', 'gso_max_size', '60000', 'gro_max_size', '60000');
    nsx('ip', 'link', 'set', 'lo', 'up');
    // Both directions of the service port on loopback go through the queue,
    // except what the wrap injects itself.
    for (const dir of ['--dport', '--sport']) {
      nsx('iptables', '-t', 'mangle', '-A', 'INPUT', '-p', 'tcp', dir, String(port), '-m', 'mark', '!', '--mark', `0x${INJECT_MARK.toString(16)}`, '-j', 'NFQUEUE', '--queue-num', String(queue));
    }
    // Counters: verdict marks reach the next table; injected packets leave with their mark.
    nsx('iptables', '-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '-m', 'mark', '--mark', `0x${VERDICT_MARK.toString(16)}`, '-j', 'ACCEPT');
    nsx('iptables', '-t', 'filter', '-A', 'OUTPUT', '-m', 'mark', '--mark', `0x${INJECT_MARK.toString(16)}`, '-j', 'ACCEPT');
  });

  after(() => {
    if (!isRoot) return;
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      // It was never created (before() failed early).
    }
  });

  const scenarios: Record<string, string> = {
    plain: 'zero deltas',
    deltas: 'non-zero seq, ack and timestamp deltas',
    lagging: 'a buffer that acknowledges 3 ms late and eager ACKs injected',
  };
  for (const [scenario, what] of Object.entries(scenarios)) {
    it(`carries 2 MB both ways intact through a record-mode wrap with ${what}`, async () => {
      const r = await runHarness(ns, port, queue, scenario);
      expect(r.error, JSON.stringify(r)).to.equal(undefined);
      expect(r.echoed).to.equal(r.sent);
      expect(r.stats.incoming).to.be.greaterThan(10);
      expect(r.stats.outgoing).to.be.greaterThan(10);
      expect(r.stats.badChecksum).to.equal(0);
      expect(r.counters.malformedTotal).to.equal(0);
      expect(r.counters.truncatedDropped).to.equal(0);
      expect(r.stats.ackBeyondStable).to.equal(0);
      if (scenario === 'deltas') expect(r.stats.modified).to.equal(r.stats.packets - (r.stats.drops['suppressed'] ?? 0));
      if (scenario === 'plain') expect(r.stats.batches, 'batch verdicts').to.be.greaterThan(0);
      if (scenario === 'lagging') {
        expect(r.stats.modified, 'acks clamped').to.be.greaterThan(0);
        expect(r.stats.crafted, 'eager ACKs injected').to.be.greaterThan(0);
      }
      expect(r.injected).to.equal(40);
      expect(r.duplicateOpen).to.equal(SswErrorCode.NFQUEUE);
    });
  }

  it('sets the verdict mark on accepted packets and sends injected packets with their mark', function () {
    if (!isRoot) this.skip();
    expect(ruleCount(ns, 'filter', 'INPUT', `mark match 0x${VERDICT_MARK.toString(16)}`)).to.be.greaterThan(20);
    expect(ruleCount(ns, 'filter', 'OUTPUT', `mark match 0x${INJECT_MARK.toString(16)}`)).to.be.at.least(3);
  });

  it('fails closed: with no queue bound the service gets no packets', async function () {
    if (!isRoot) this.skip();
    const script = `const s=require('net').connect(${port},'127.0.0.1');s.on('connect',()=>{console.log('connected');process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},700)`;
    const out = sh('ip', 'netns', 'exec', ns, process.execPath, '-e', script);
    expect(out.trim()).to.equal('timeout');
  });
});

describe('NfQueue.open', () => {
  it('rejects a queue number above 65535 with FTCP_ERR_BAD_CONFIG', () => {
    let caught: unknown;
    try {
      NfQueue.open({ queue: 70000, onPackets: () => undefined });
    } catch (err) {
      caught = err;
    }
    expect(isFtcpError(caught, SswErrorCode.BAD_CONFIG)).to.equal(true);
  });
});

describe('RawInjector', () => {
  it('refuses to send after close with FTCP_ERR_CLOSED', function () {
    if (!isRoot) this.skip();
    const r = new RawInjector(1);
    r.close();
    let caught: unknown;
    try {
      r.send(Buffer.alloc(40));
    } catch (err) {
      caught = err;
    }
    expect(isFtcpError(caught, SswErrorCode.CLOSED)).to.equal(true);
  });
});
