import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Testbed,
  TcpFlag,
  cleanupStale,
  describeSegment,
  hasFlag,
  nextPort,
  nsList,
  pidAlive,
  run,
  startPeer,
  HostProcess,
  type TcpSegment,
} from '../src/index.js';

/** Pids of every process whose network namespace has one of these inodes. */
function processesInNetns(inodes: readonly number[]): number[] {
  const wanted = new Set(inodes.map((i) => `net:[${i}]`));
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (wanted.has(readlinkSync(`/proc/${entry}/ns/net`))) found.push(Number(entry));
    } catch {
      // Gone meanwhile, or a kernel thread.
    }
  }
  return found;
}

/** Starts the peer tool as a server in `role` and waits until it listens. */
async function serve(bed: Testbed, role: 'primary' | 'backup', port: number, extra: string[] = []): Promise<HostProcess> {
  const p = startPeer(bed, role, ['serve', '--port', String(port), '--bind', bed.vip, ...extra]);
  await p.waitForEvent('listening', 5000);
  return p;
}

/** Segments of the connection to VIP:port sent by the server side. */
function fromServer(bed: Testbed, port: number, segs: readonly TcpSegment[]): TcpSegment[] {
  return segs.filter((s) => s.src === bed.vip && s.srcPort === port);
}

function finOrRst(segs: readonly TcpSegment[]): TcpSegment[] {
  return segs.filter((s) => hasFlag(s, TcpFlag.FIN) || hasFlag(s, TcpFlag.RST));
}

describe('the namespace test bed', function () {
  let bed: Testbed | undefined;

  before(async function () {
    this.timeout(10_000);
    await cleanupStale();
  });

  afterEach(async function () {
    this.timeout(10_000);
    await bed?.destroy();
    bed = undefined;
  });

  it('lets the client reach a TCP server on the primary through the VIP and the bridge', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    const port = nextPort();
    await serve(bed, 'primary', port, ['--greet', 'primary']);
    const client = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port)]);
    await client.waitForEvent('connected', 3000);
    const hello = await client.waitForEvent<{ ev: string; text: string }>('data', 3000);
    expect(hello.text).to.equal('primary\n');
    client.writeLine('send 1000');
    await client.waitForLine((l) => l.includes('"total":1008'), 3000);
    const neigh = await bed.neighbor('client', bed.vip);
    expect(neigh?.mac).to.equal(bed.host('primary').lanMac);
  });

  it('lets the primary and the backup talk over the replica link', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    const port = nextPort();
    const p = startPeer(bed, 'backup', ['serve', '--port', String(port), '--bind', bed.host('backup').replicaAddr ?? '', '--greet', 'backup']);
    await p.waitForEvent('listening', 5000);
    const c = startPeer(bed, 'primary', ['connect', '--host', bed.host('backup').replicaAddr ?? '', '--port', String(port), '--mode', 'probe', '--expect', 'backup']);
    await c.waitForEvent('probe', 3000);
    // The client is not on the replica link.
    const r = await bed.exec('client', 'ip', ['route', 'get', bed.host('backup').replicaAddr ?? '']).catch((e: Error) => e);
    expect(r).to.be.instanceOf(Error);
  });

  for (const mode of ['silent', 'carrier'] as const) {
    it(`partitions the replica link (${mode}) so nothing crosses it, and heals it so the stalled connection resumes`, async function () {
      this.timeout(10_000);
      bed = await Testbed.create();
      const port = nextPort();
      const backupRep = bed.host('backup').replicaAddr ?? '';
      const s = startPeer(bed, 'backup', ['serve', '--port', String(port), '--bind', backupRep, '--greet', 'backup']);
      await s.waitForEvent('listening', 5000);
      const c = startPeer(bed, 'primary', ['connect', '--host', backupRep, '--port', String(port)]);
      await c.waitForEvent('data', 3000);
      await bed.partitionReplica(mode);
      c.writeLine('send 100');
      await new Promise((r) => setTimeout(r, 400));
      expect(c.events().filter((e) => e.ev === 'data'), 'no echo while partitioned').to.have.length(1);
      const links = await bed.ip('primary', ['-j', 'link', 'show', 'dev', 'rep0']);
      const state = (JSON.parse(links.stdout) as Array<{ operstate: string }>)[0]?.operstate;
      expect(state).to.equal(mode === 'silent' ? 'UP' : 'DOWN');
      await bed.healReplica();
      // The next retransmission (RTO backoff: 200, 400, 800 ms) gets through.
      await c.waitForLine((l) => l.includes('"total":107'), 3000);
      expect(c.events().filter((e) => ['end', 'error', 'close'].includes(e.ev))).to.deep.equal([]);
    });
  }

  it('moves the VIP to the backup, and the client follows only once the backup announces it', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    const port = nextPort();
    await serve(bed, 'primary', port, ['--greet', 'primary']);
    await serve(bed, 'backup', port, ['--greet', 'backup']);
    const first = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port), '--mode', 'probe', '--expect', 'primary']);
    await first.waitForEvent('probe', 3000);

    await bed.moveVip('backup', { announce: false });
    // Adding an address announces nothing: the client still has the primary's MAC.
    expect((await bed.neighbor('client', bed.vip))?.mac).to.equal(bed.host('primary').lanMac);

    const t0 = Date.now();
    await bed.announceVip();
    expect((await bed.neighbor('client', bed.vip))?.mac).to.equal(bed.host('backup').lanMac);
    const probe = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port), '--mode', 'probe', '--expect', 'backup', '--deadline-ms', '2000']);
    const reached = await probe.waitForEvent<{ ev: string; t: number; attempts: number }>('probe', 3000);
    expect(reached.t - t0, 'ms from announcement start to a reply from the backup').to.be.below(1000);
    expect(reached.attempts).to.equal(1);
  });

  it('lets a new connection reach the backup soon after the primary crashes and the VIP moves', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    const port = nextPort();
    await serve(bed, 'primary', port, ['--greet', 'primary']);
    await serve(bed, 'backup', port, ['--greet', 'backup']);
    const first = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port), '--mode', 'probe', '--expect', 'primary']);
    await first.waitForEvent('probe', 3000);
    await bed.crash('primary');
    const move = await bed.moveVip('backup');
    expect(move.from).to.equal('primary');
    expect(bed.vipOwner).to.equal('backup');
    const probe = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port), '--mode', 'probe', '--expect', 'backup', '--deadline-ms', '2000']);
    const reached = await probe.waitForEvent<{ ev: string; t: number }>('probe', 3000);
    expect(reached.t - (move.announcedAt ?? 0), 'ms from the announcement to a reply from the backup').to.be.below(1000);
  });

  // The kernel closes a killed server's socket with a FIN, or with a RST when
  // data it never read is thrown away (RFC 9293 3.6); `hold` never reads.
  for (const mode of ['echo', 'hold'] as const) {
    describe(`with a server that does ${mode === 'echo' ? 'echo' : 'not read'}`, function () {
      async function openConnection(b: Testbed, port: number): Promise<HostProcess> {
        await serve(b, 'primary', port, ['--mode', mode, '--greet', 'hi']);
        const client = startPeer(b, 'client', ['connect', '--host', b.vip, '--port', String(port)]);
        await client.waitForEvent('data', 3000);
        client.writeLine('send 2000');
        // Let the 2000 bytes reach the server (and, for echo, come back).
        await new Promise((r) => setTimeout(r, 100));
        return client;
      }

      it(`shows its ${mode === 'echo' ? 'FIN' : 'RST'} to the client when killed without cutting links first (the capture sees it)`, async function () {
        this.timeout(10_000);
        bed = await Testbed.create();
        const port = nextPort();
        const cap = await bed.capture('client', { filter: `tcp port ${port}` });
        const client = await openConnection(bed, port);
        const server = bed.processes.find((p) => p.commandLine.includes('serve'));
        server?.signal('SIGKILL');
        await client.waitForEvent(mode === 'echo' ? 'end' : 'error', 3000);
        const segs = fromServer(bed, port, (await cap.stop()).segments);
        const closing = finOrRst(segs);
        expect(closing.map(describeSegment)).to.have.length.above(0);
        expect(hasFlag(closing[0] as TcpSegment, mode === 'echo' ? TcpFlag.FIN : TcpFlag.RST)).to.equal(true);
      });

      it('leaves the client connection open with no FIN and no RST when the primary crashes', async function () {
        this.timeout(10_000);
        bed = await Testbed.create();
        const port = nextPort();
        const cap = await bed.capture('client', { filter: `tcp port ${port}` });
        const client = await openConnection(bed, port);
        const report = await bed.crash('primary');
        expect(report.killedPids).to.have.length.above(0);
        for (const pid of report.killedPids) expect(pidAlive(pid), `pid ${pid}`).to.equal(false);
        // The client keeps talking into the void: its retransmissions (RTO
        // 200 ms and up) must get no answer at all.
        client.writeLine('send 500');
        await new Promise((r) => setTimeout(r, 700));
        const all = (await cap.stop()).segments;
        const segs = fromServer(bed, port, all);
        expect(segs.some((s) => hasFlag(s, TcpFlag.SYN | TcpFlag.ACK)), 'the capture saw the SYN-ACK').to.equal(true);
        expect(finOrRst(segs).map(describeSegment)).to.deep.equal([]);
        expect(segs.filter((s) => s.time * 1000 > report.cutAt).map(describeSegment), 'nothing at all from the server after the cut').to.deep.equal([]);
        const retransmits = all.filter((s) => s.dst === bed?.vip && s.payloadLength > 0 && s.time * 1000 > report.cutAt);
        expect(retransmits.length, 'client segments after the crash').to.be.above(0);
        const closed = client.events().filter((e) => ['end', 'error', 'close'].includes(e.ev));
        expect(closed).to.deep.equal([]);
        expect(client.exitStatus).to.equal(undefined);
      });
    });
  }

  for (const direction of ['download', 'upload'] as const) {
    it(`limits the client link's ${direction} to its configured rate`, async function () {
      this.timeout(15_000);
      bed = await Testbed.create();
      const rateMbit = 20;
      // About 0.6 s at the limit.
      const bytes = 1_500_000;
      const measure = async (): Promise<number> => {
        const port = nextPort();
        if (direction === 'download') {
          await serve(bed!, 'primary', port, ['--mode', 'source', '--bytes', String(bytes)]);
          const c = startPeer(bed!, 'client', ['connect', '--host', bed!.vip, '--port', String(port), '--mode', 'download']);
          const done = await c.waitForEvent<{ ev: string; bytes: number; ms: number }>('done', 8000);
          expect(done.bytes).to.equal(bytes);
          return (done.bytes * 8) / (done.ms * 1000);
        }
        const s = await serve(bed!, 'primary', port, ['--mode', 'sink']);
        startPeer(bed!, 'client', ['connect', '--host', bed!.vip, '--port', String(port), '--mode', 'upload', '--bytes', String(bytes)]);
        const sink = await s.waitForEvent<{ ev: string; bytes: number; ms: number }>('sink', 8000);
        expect(sink.bytes).to.equal(bytes);
        return (sink.bytes * 8) / (sink.ms * 1000);
      };
      const clean = await measure();
      await bed.limitRate('client', direction === 'download' ? { downMbit: rateMbit } : { upMbit: rateMbit });
      const limited = await measure();
      expect(limited, `${limited.toFixed(1)} Mbit/s under a ${rateMbit} Mbit/s limit`).to.be.below(2 * rateMbit);
      expect(limited, 'the limited link still carries traffic').to.be.above(rateMbit / 4);
      expect(clean, `${clean.toFixed(1)} Mbit/s without a limit`).to.be.above(2 * rateMbit);
      await bed.clearRate('client');
    });
  }

  it('removes every namespace and device it made on destroy, even after a crash', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    const linksBefore = (await run('ip', ['-o', 'link', 'show'])).stdout;
    // A namespace's identity is the inode of its /run/netns file; once the
    // file is gone, the namespace lives on only while a process is in it.
    const inodes = bed.namespaces.map((ns) => statSync(`/run/netns/${ns}`).ino);
    const port = nextPort();
    await serve(bed, 'primary', port);
    const sleepers = (['client', 'backup', 'lan'] as const).map((r) => bed!.spawn(r, 'sleep', ['30']));
    expect((await nsList()).filter((n) => n.includes(bed!.tag))).to.have.length(4);
    expect(processesInNetns(inodes)).to.include.members(sleepers.map((p) => p.pid));
    await bed.crash('primary');
    await bed.destroy();
    await bed.destroy(); // idempotent
    expect((await nsList()).filter((n) => n.includes(bed!.tag))).to.deep.equal([]);
    for (const p of [...sleepers, ...bed.processes]) expect(pidAlive(p.pid), `${p.commandLine} pid ${p.pid}`).to.equal(false);
    expect(processesInNetns(inodes), 'processes still in the deleted namespaces').to.deep.equal([]);
    // Nothing was ever made in the root namespace.
    const linksAfter = (await run('ip', ['-o', 'link', 'show'])).stdout;
    expect(linksAfter).to.not.include(bed.tag);
    expect(linksBefore).to.not.include('lan0');
    expect(linksAfter).to.not.include('lan0');
  });

  it('removes the private directory of an ftcp node it killed, and no other node directory', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    // A node names itself in owner.pid, as `ftcp primary` does; killed, it cannot remove the directory.
    const node = bed.spawn('primary', 'sh', ['-c', 'd=$(mktemp -d /tmp/ftcp-primary-XXXXXX) && echo $$ > "$d/owner.pid" && echo "$d" && exec sleep 30']);
    const nodeDir = await node.waitForLine((l) => l.startsWith('/tmp/ftcp-primary-'), 5000);
    const deadPid = Number((await run('cat', ['/proc/sys/kernel/pid_max'])).stdout.trim());
    const others = [mkdtempSync(join(tmpdir(), 'ftcp-backup-')), mkdtempSync(join(tmpdir(), 'ftcp-primary-'))];
    writeFileSync(join(others[0]!, 'owner.pid'), String(deadPid));
    writeFileSync(join(others[1]!, 'owner.pid'), String(process.pid));
    try {
      await bed.crash('primary');
      expect(existsSync(nodeDir), 'left until destroy').to.equal(true);
      await bed.destroy();
      expect(existsSync(nodeDir), nodeDir).to.equal(false);
      for (const d of others) expect(existsSync(d), d).to.equal(true);
    } finally {
      for (const d of [nodeDir, ...others]) rmSync(d, { recursive: true, force: true });
    }
  });

  it('removes namespaces left by a dead run, and only those', async function () {
    this.timeout(10_000);
    bed = await Testbed.create();
    // pid_max itself is never a live pid.
    const deadPid = Number((await run('cat', ['/proc/sys/kernel/pid_max'])).stdout.trim());
    const stale = `ftcp-${deadPid}-beef-client`;
    const foreign = `ftcp-x${process.pid}-other`;
    await run('ip', ['netns', 'add', stale]);
    await run('ip', ['netns', 'add', foreign]);
    try {
      const sleeper = HostProcess.start('stale', stale, 'sleep', ['30']);
      const removed = await cleanupStale();
      expect(removed).to.deep.equal([stale]);
      const left = await nsList();
      expect(left).to.not.include(stale);
      expect(left).to.include(foreign);
      for (const ns of bed.namespaces) expect(left).to.include(ns);
      await sleeper.exited;
    } finally {
      await run('ip', ['netns', 'del', foreign]).catch(() => undefined);
      await run('ip', ['netns', 'del', stale]).catch(() => undefined);
    }
  });
});
