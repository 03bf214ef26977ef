import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { ErrorCode } from '@ftcp/stable-buffer';
import { ServiceRules, listRules, removeStaleRules, renderRules } from '../../src/netfilter/rules.js';

const ns = `ftcp-rules-${process.pid}`;
const prefix = ['ip', 'netns', 'exec', ns];
const VIP = '10.213.77.1';
const PORT = 7701;

function sh(args: string[], input?: string): string {
  return execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Inside the namespace: servers on PORT and PORT+1, a connect to each with a 700 ms limit. */
function probeConnects(): { service: boolean; other: boolean } {
  const script = `
    const net = require('net');
    const listen = (p) => new Promise((r) => { const s = net.createServer((c) => c.end()); s.listen(p, '${VIP}', () => r(s)); });
    const connect = (p) => new Promise((r) => {
      const c = net.connect({ host: '${VIP}', port: p });
      const t = setTimeout(() => { c.destroy(); r(false); }, 700);
      c.once('connect', () => { clearTimeout(t); c.destroy(); r(true); });
      c.once('error', () => { clearTimeout(t); r(false); });
    });
    (async () => {
      const a = await listen(${PORT}), b = await listen(${PORT + 1});
      const service = await connect(${PORT}), other = await connect(${PORT + 1});
      console.log(JSON.stringify({ service, other }));
      a.close(); b.close(); process.exit(0);
    })();`;
  return JSON.parse(sh([...prefix, 'node', '-e', script])) as { service: boolean; other: boolean };
}

describe('ServiceRules', function () {
  this.timeout(20_000);

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    spawnSync('ip', ['netns', 'del', ns]);
    sh(['ip', 'netns', 'add', ns]);
    sh([...prefix, 'ip', 'link', 'set', 'lo', 'up']);
    sh([...prefix, 'ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('renders one atomic transaction that queues only the service, skipping marked packets', () => {
    const text = renderRules({ vip: VIP, port: PORT, queueNum: 7, skipMark: 0xf7c9, ownerPid: 42 });
    expect(text.split('\n')).to.include.members([
      '*mangle',
      ':FTCP-42-7-I - [0:0]',
      `-A FTCP-42-7-I -d ${VIP}/32 -p tcp -m tcp --dport ${PORT} -m mark ! --mark 0xf7c9 -j NFQUEUE --queue-num 7`,
      `-A FTCP-42-7-O -s ${VIP}/32 -p tcp -m tcp --sport ${PORT} -m mark ! --mark 0xf7c9 -j NFQUEUE --queue-num 7`,
      '-I PREROUTING 1 -j FTCP-42-7-I',
      '-I OUTPUT 1 -j FTCP-42-7-O',
      'COMMIT',
    ]);
    expect(text).to.not.include('queue-bypass');
  });

  it('queues only outgoing SYN, FIN and RST when told to (control), and of the client\'s pure ACKs only some', () => {
    const lines = renderRules({ vip: VIP, port: PORT, queueNum: 7, skipMark: 0xf7c9, ownerPid: 42, outgoing: 'control' }).split('\n');
    const pass = `-A FTCP-42-7-O -s ${VIP}/32 -p tcp -m tcp --sport ${PORT} --tcp-flags SYN,FIN,RST NONE -j RETURN`;
    const queue = `-A FTCP-42-7-O -s ${VIP}/32 -p tcp -m tcp --sport ${PORT} -m mark ! --mark 0xf7c9 -j NFQUEUE --queue-num 7`;
    expect(lines).to.include.members([pass, queue, `-A FTCP-42-7-I -d ${VIP}/32 -p tcp -m tcp --dport ${PORT} -m mark ! --mark 0xf7c9 -j NFQUEUE --queue-num 7`]);
    expect(lines.indexOf(pass)).to.be.below(lines.indexOf(queue));
    // Short packets without SYN, FIN or RST go to the ACK chain: some queued per connection, pure ACKs passed, the rest queued.
    expect(lines).to.include(`-A FTCP-42-7-I -d ${VIP}/32 -p tcp -m tcp --dport ${PORT} -m mark ! --mark 0xf7c9 -m length --length 40:80 --tcp-flags SYN,FIN,RST NONE -g FTCP-42-7-A`);
    const acks = lines.filter((l) => l.startsWith('-A FTCP-42-7-A '));
    expect(acks[0]).to.include('-m hashlimit --hashlimit-upto 100/sec').and.to.include('-j NFQUEUE --queue-num 7');
    expect(acks.slice(1, -1)).to.have.length(11);
    expect(acks[1]).to.equal('-A FTCP-42-7-A -m u32 --u32 "0>>24=0x45&&0&0xFFFF=40&&32>>28=5" -j RETURN');
    expect(acks[8]).to.equal('-A FTCP-42-7-A -m u32 --u32 "0>>24=0x45&&0&0xFFFF=68&&32>>28=12" -j RETURN');
    expect(acks.at(-1)).to.equal('-A FTCP-42-7-A -j NFQUEUE --queue-num 7');
    const all = renderRules({ vip: VIP, port: PORT, queueNum: 7, skipMark: 0xf7c9, ownerPid: 42 });
    expect(all).to.not.include('RETURN');
    expect(all).to.not.include('FTCP-42-7-A');
  });

  it('mutes only the service\'s outgoing packets with a drop rule at the head of its chain, and unmutes', async () => {
    const rules = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 16, skipMark: 0x1, prefix, outgoing: 'control' });
    const outbound = (): string[] => sh([...prefix, 'iptables', '-t', 'mangle', '-S', rules.chains[1]!]).trim().split('\n').slice(1);
    const drop = `-A ${rules.chains[1]} -s ${VIP}/32 -p tcp -m tcp --sport ${PORT} -j DROP`;
    try {
      expect(outbound()[0]).to.include('RETURN');
      await rules.mute(true);
      await rules.mute(true);
      expect(outbound()[0]).to.equal(drop);
      expect(outbound().filter((l) => l.endsWith('-j DROP'))).to.have.length(1);
      // Everything else the host sends still goes (a primary's ZeroMQ to the buffer among it).
      expect(probeConnects()).to.deep.equal({ service: false, other: true });
      await rules.mute(false);
      expect(outbound().some((l) => l.endsWith('-j DROP'))).to.equal(false);
      rules.muteSync();
      expect(outbound()[0]).to.equal(drop);
      expect(probeConnects()).to.deep.equal({ service: false, other: true });
    } finally {
      await rules.remove();
    }
    expect(sh([...prefix, 'iptables-save', '-t', 'mangle'])).to.not.match(/FTCP-/);
  });

  it('ends unmuted when an unmute comes while the mute is still being installed, and muted when the last word is a mute', async () => {
    const rules = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 17, skipMark: 0x1, prefix, outgoing: 'control' });
    const drops = (): number => sh([...prefix, 'iptables', '-t', 'mangle', '-S', rules.chains[1]!]).split('\n').filter((l) => l.endsWith('-j DROP')).length;
    try {
      // A primary that goes quiet for less than one iptables run: both calls before either command ends.
      await Promise.all([rules.mute(true), rules.mute(false)]);
      expect(drops(), 'a mute rule left behind by a quiet shorter than its own install').to.equal(0);
      await Promise.all([rules.mute(true), rules.mute(false), rules.mute(true)]);
      expect(drops()).to.equal(1);
      // A step-down while an unmute is under way must stay muted.
      const unmuting = rules.mute(false);
      rules.muteSync();
      await unmuting;
      expect(drops()).to.be.at.least(1);
    } finally {
      await rules.remove();
    }
  });

  for (const [what, spec] of [
    ['a bad address', { vip: '10.0.0.256', port: 1, queueNum: 0, skipMark: 1 }],
    ['port 0', { vip: VIP, port: 0, queueNum: 0, skipMark: 1 }],
    ['mark 0', { vip: VIP, port: 1, queueNum: 0, skipMark: 0 }],
  ] as const) {
    it(`refuses ${what} with a config error`, () => {
      expect(() => renderRules(spec)).to.throw().with.property('code', ErrorCode.BAD_CONFIG);
    });
  }

  it('fails closed: with no queue listener the service is unreachable, other ports are not', async () => {
    expect(probeConnects()).to.deep.equal({ service: true, other: true });
    const rules = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 11, skipMark: 0x1, prefix });
    try {
      expect(probeConnects()).to.deep.equal({ service: false, other: true });
    } finally {
      await rules.remove();
    }
    expect(probeConnects()).to.deep.equal({ service: true, other: true });
  });

  it('leaves no chain and no jump behind after remove, and remove is idempotent', async () => {
    const rules = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 12, skipMark: 0x1, prefix });
    expect((await listRules(prefix)).map((r) => r.chain)).to.include.members(rules.chains);
    await rules.remove();
    await rules.remove();
    const saved = sh([...prefix, 'iptables-save', '-t', 'mangle']);
    expect(saved).to.not.match(/FTCP-/);
  });

  it('removes synchronously for an exit hook', async () => {
    const rules = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 13, skipMark: 0x1, prefix });
    rules.removeSync();
    expect(sh([...prefix, 'iptables-save', '-t', 'mangle'])).to.not.match(/FTCP-/);
  });

  it('removes chains left by a dead process at the next start and keeps a live owner\'s', async () => {
    const dead = spawnSync('true').pid!;
    const mine = await ServiceRules.install({ vip: VIP, port: PORT, queueNum: 14, skipMark: 0x1, prefix });
    sh([...prefix, 'iptables-restore', '--noflush'], renderRules({ vip: VIP, port: PORT, queueNum: 15, skipMark: 0x1, ownerPid: dead, outgoing: 'control' }));
    expect((await listRules(prefix)).map((r) => r.pid)).to.include(dead);
    const removed = await removeStaleRules(prefix);
    expect(removed.sort()).to.deep.equal([`FTCP-${dead}-15-A`, `FTCP-${dead}-15-I`, `FTCP-${dead}-15-O`]);
    expect((await listRules(prefix)).map((r) => r.chain)).to.deep.equal(mine.chains);
    await mine.remove();
  });
});
