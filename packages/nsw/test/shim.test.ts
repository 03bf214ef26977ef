import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NswAgent, SHIM_EXIT_DIVERGED, shimPath, type Divergence } from '../src/index.js';
import { callKindName, decodeCallData } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { agentPair, cDir, compileC, quiet, run, shimEnv, sleep, tempDir, until, type AgentPair } from './helpers.js';

/** A dynamically linked python3: LD_PRELOAD does nothing to a static one or to a pyenv shim script. */
const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p));

describe('the shim (LD_PRELOAD) with its agent', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  let nondet: string;
  let sink: MemoryRecordSink;
  let primary: NswAgent;
  let replica: NswAgent;
  let divergences: Divergence[];

  before(() => {
    tmp = tempDir('shim');
    nondet = compileC('nondet', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());

  let pair: AgentPair;
  beforeEach(async () => {
    pair = await agentPair(tmp.dir);
    ({ sink, primary, replica, divergences } = pair);
  });
  afterEach(() => pair.close());

  const recordEnv = (): Record<string, string | undefined> => shimEnv(shimPath(), 'record', primary.options.socketPath);
  const playbackEnv = (): Record<string, string | undefined> => shimEnv(shimPath(), 'playback', replica.options.socketPath);

  it('replays a C program so that the replica prints exactly what the primary printed', async () => {
    const recorded = await run(nondet, [], recordEnv());
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    await sleep(20);
    const replayStart = Date.now();
    const replayed = await run(nondet, [], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.code).to.equal(0);
    expect(replayed.stdout).to.equal(recorded.stdout);
    // Identical output although the replica's real pid and clock differ.
    expect(replayed.pid).to.not.equal(recorded.pid);
    expect(replayed.stdout).to.contain(`pid=${recorded.pid} `);
    expect(replayed.stdout).to.contain('epoll_wait=2 epoll_pwait=1 data and events right: 1');
    expect(replayed.stdout).to.contain('locks: fcntl=0 flock=0 cloexec=1');
    const realtime = Number(/realtime=(\d+)\./.exec(replayed.stdout)?.[1]);
    expect(realtime * 1000).to.be.below(replayStart);
    expect(divergences).to.deep.equal([]);
    expect(replica.canTakeOver).to.equal(true);
  });

  it('gives a replayed select the time its primary\'s left in the timeout, which Linux writes there', async () => {
    const recorded = await run(nondet, [], recordEnv());
    const replayed = await run(nondet, [], playbackEnv());
    const left = (out: string): string | undefined => /select left .*/.exec(out)?.[0];
    expect(left(recorded.stdout)).to.match(/^select left 0\.9\d{5} of 1 s \(r=1\) and 0\.000000 of 2 ms \(r=0\)$/);
    expect(left(replayed.stdout)).to.equal(left(recorded.stdout));
    expect(divergences).to.deep.equal([]);
  });

  it('replays a Python program (time.time, os.urandom, os.getpid, fork) with identical output', async function () {
    if (!python) this.skip();
    const script = join(cDir, 'nondet.py');
    const recorded = await run(python!, [script], recordEnv());
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    const replayed = await run(python!, [script], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(replayed.stdout).to.contain(`pid ${recorded.pid} `);
    expect(divergences).to.deep.equal([]);
  });

  it('either replays a threaded Python program identically or reports the divergence, never something else', async function () {
    if (!python) this.skip();
    const script = join(cDir, 'nondet.py');
    const recorded = await run(python!, [script, '--thread'], recordEnv());
    expect(recorded.code).to.equal(0);
    const replayed = await run(python!, [script, '--thread'], playbackEnv());
    if (replayed.code === 0) {
      expect(replayed.stdout).to.equal(recorded.stdout);
      expect(divergences).to.deep.equal([]);
    } else {
      expect(replayed.code).to.equal(SHIM_EXIT_DIVERGED);
      expect(replayed.stderr).to.contain('FTCP_ERR_DIVERGENCE');
      // Each thread is a stream of its own: a second one may diverge too before the first ERROR ends the process.
      expect(divergences).to.have.length.of.at.least(1);
      for (const d of divergences) expect(d.stream).to.match(/^srv(\/|$)/);
      expect(replica.canTakeOver).to.equal(false);
    }
  });

  it('reports a divergence, not a hang, when a replica thread goes on where its primary process\'s exit cut the thread short', async () => {
    const outlive = compileC('outlive', tmp.dir, ['-lpthread']);
    const recorded = await run(outlive, ['exit'], recordEnv());
    expect(recorded.code).to.equal(0);
    const threadCalls = sink.records('srv/t1').map(decodeCallData);
    expect(threadCalls.map((c) => callKindName(c.kind)), 'no END: the exit killed the thread').to.deep.equal(['getpid']);
    const replayed = await run(outlive, ['more'], playbackEnv(), 10_000);
    expect(replayed.code, `signal ${replayed.signal}`).to.equal(SHIM_EXIT_DIVERGED);
    expect(divergences.map((d) => d.stream)).to.deep.equal(['srv/t1']);
    expect(divergences[0]!.reason).to.contain("the primary's process exited while this thread was at call 1");
    expect(replica.canTakeOver).to.equal(false);
  });

  it('stops a replica that read an unwrapped source and took another path, and reports the divergence', async () => {
    const unwrapped = compileC('unwrapped', tmp.dir);
    const recorded = await run(unwrapped, [], recordEnv());
    expect(recorded.stdout).to.match(/^same pid/);
    const replayed = await run(unwrapped, [], playbackEnv());
    expect(replayed.code).to.equal(SHIM_EXIT_DIVERGED);
    expect(replayed.stdout).to.equal('');
    expect(replayed.stderr).to.contain('FTCP_ERR_DIVERGENCE').and.to.contain('the primary called time, the replica clock_gettime');
    expect(divergences).to.have.length(1);
    expect(divergences[0]).to.include({ stream: 'srv', callNo: 2 });
    expect(replica.canTakeOver).to.equal(false);
  });

  it('replays a program that reads the coarse clocks at other points than its primary did, to the same output', async () => {
    const coarse = compileC('coarse', tmp.dir);
    // Each bit says whether the program reads a coarse clock before its i-th precise read; two bits agree.
    const recorded = await run(coarse, ['0x0a7'], recordEnv());
    expect(recorded.code).to.equal(0);
    await quiet(primary);
    const coarseReads = sink.records('srv').map(decodeCallData).filter((c) => callKindName(c.kind) === 'clock_gettime' && c.arg !== 1n);
    expect(coarseReads.map((c) => c.arg)).to.deep.equal([5n, 6n, 6n, 5n, 6n, 6n]);
    const replayed = await run(coarse, ['0x15b'], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.code).to.equal(0);
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(replayed.stdout).to.contain(`5 pid=${recorded.pid}\n`);
    expect(divergences).to.deep.equal([]);
    expect(replica.canTakeOver).to.equal(true);
  });

  it('replays eight racing threads, each with a thread of its own, to the same output', async () => {
    const threads = compileC('threads', tmp.dir, ['-lpthread']);
    const recorded = await run(threads, [], recordEnv());
    expect(recorded.code).to.equal(0);
    const replayed = await run(threads, [], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(sink.streamNames()).to.include.members(['srv/t1', 'srv/t8', 'srv/t1/t1', 'srv/t8/t1']);
    // Two calls per iteration, pthread_create, and END.
    expect(sink.records('srv/t3')).to.have.length(2 * 500 + 2);
  });

  it('names the forked child and the threads by fork and creation order', async () => {
    await run(nondet, [], recordEnv());
    await until(() => sink.streamNames().length === 5);
    await quiet(primary);
    // srv/t3 makes no wrapped call but ends: its stream is its END.
    expect(sink.streamNames()).to.deep.equal(['srv', 'srv/f1', 'srv/t1', 'srv/t2', 'srv/t3']);
  });

  it('names an image the forked child execs as a stream of its own, and replays it', async () => {
    const recorded = await run(nondet, ['exec'], recordEnv());
    expect(recorded.stderr).to.equal('');
    expect(recorded.stdout).to.contain("exec'd image").and.to.contain('exited 9');
    await quiet(primary);
    expect(sink.streamNames()).to.deep.equal(['srv', 'srv/f1/e']);
    const replayed = await run(nondet, ['exec'], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.stdout).to.equal(recorded.stdout);
  });

  it('plays a promoted replica back to the primary\'s last stable call, then records its calls live', async () => {
    const golive = compileC('golive', tmp.dir);
    const recorded = await run(golive, [], recordEnv());
    await quiet(primary);
    // The primary failed when only its first three calls were stable.
    const buffer = new MemoryRecordSink();
    for (const [i, rec] of sink.records('srv').slice(0, 3).entries()) await buffer.append('srv', i + 1, rec);
    const backup = new NswAgent({ socketPath: join(tmp.dir, 'backup.sock'), mode: 'playback', source: buffer });
    await backup.listen();
    try {
      const replaying = run(golive, [], shimEnv(shimPath(), 'playback', backup.options.socketPath));
      await until(() => backup.counters.played === 3);
      backup.goLive(new Map([['srv', 3]]), buffer);
      const replayed = await replaying;
      expect(replayed.code).to.equal(0);
      const want = recorded.stdout.split('\n').slice(0, 3).concat([3, 4, 5].map((i) => `${i} pid=${replayed.pid}`), ['']);
      expect(replayed.stdout.split('\n')).to.deep.equal(want);
      await quiet(backup);
      const live = buffer.records('srv').slice(3).map(decodeCallData);
      expect(live.map((r) => [callKindName(r.kind), r.result])).to.deep.equal([...Array(3).fill(['getpid', BigInt(replayed.pid)]), ['end', 0n]]);
      expect(backup.liveStreams()).to.deep.equal(['srv']);
    } finally {
      await backup.close();
    }
  });

  it('records a thread that a promoted replica creates after going live, from its first call, as a live stream', async () => {
    const golive = compileC('golive_thread', tmp.dir, ['-lpthread']);
    await run(golive, [], recordEnv());
    await quiet(primary);
    // The primary failed when only its first three calls were stable: none of the thread's.
    const buffer = new MemoryRecordSink();
    for (const [i, rec] of sink.records('srv').slice(0, 3).entries()) await buffer.append('srv', i + 1, rec);
    const backup = new NswAgent({ socketPath: join(tmp.dir, 'backup.sock'), mode: 'playback', source: buffer });
    const refused: string[] = [];
    backup.on('bad-input', (e: { code: string; message: string }) => refused.push(`${e.code}: ${e.message}`));
    await backup.listen();
    try {
      const replaying = run(golive, [], shimEnv(shimPath(), 'playback', backup.options.socketPath));
      await until(() => backup.counters.played === 3);
      backup.goLive(new Map([['srv', 3]]), buffer);
      const replayed = await replaying;
      expect(replayed.stderr).to.equal('');
      expect(replayed.code).to.equal(0);
      expect(replayed.stdout).to.contain(`thread pid=${replayed.pid}\n4 pid=${replayed.pid}\n`);
      await quiet(backup);
      expect(refused).to.deep.equal([]);
      expect(buffer.records('srv/t1').map((r) => callKindName(decodeCallData(r).kind))).to.deep.equal(['getpid', 'end']);
      expect(backup.liveStreams()).to.deep.equal(['srv', 'srv/t1']);
    } finally {
      await backup.close();
    }
  });

  it('refuses to let a diverged replica go live', async () => {
    const unwrapped = compileC('unwrapped', tmp.dir);
    await run(unwrapped, [], recordEnv());
    await run(unwrapped, [], playbackEnv());
    expect(() => replica.goLive(new Map(), sink)).to.throw().with.property('code', 'FTCP_ERR_DIVERGENCE');
  });

  it('keeps its agent channel when the program closes every descriptor, as daemons do', async () => {
    const recorded = await run(nondet, ['close-all'], recordEnv());
    expect(recorded.stderr).to.equal('');
    const replayed = await run(nondet, ['close-all'], playbackEnv());
    expect(replayed.stderr).to.equal('');
    expect(replayed.stdout).to.equal(recorded.stdout);
  });

  for (const mode of ['record', 'playback'] as const) {
    it(`keeps the program's observable semantics (errno, failures, fork, threads) in ${mode} mode`, async () => {
      const bare = await run(nondet, ['properties'], {});
      if (mode === 'playback') await run(nondet, ['properties'], recordEnv());
      const shimmed = await run(nondet, ['properties'], mode === 'record' ? recordEnv() : playbackEnv());
      expect(shimmed.stderr).to.equal('');
      expect(shimmed.stdout).to.equal(bare.stdout);
    });
  }

  it('records every wrapped kind of call the program makes, in its own stream', async () => {
    await run(nondet, [], recordEnv());
    await quiet(primary);
    const kinds = new Set(sink.records('srv').map((r) => callKindName(decodeCallData(r).kind)));
    expect([...kinds].sort()).to.deep.equal(
      [
        'clock_gettime', 'epoll_wait', 'fork', 'getentropy', 'getpid', 'getppid', 'getrandom', 'gettid', 'gettimeofday', 'lock', 'poll',
        'pthread_create', 'read_random', 'select', 'time', 'end',
      ].sort(),
    );
    expect(sink.records('srv/t1').map((r) => callKindName(decodeCallData(r).kind))).to.deep.equal(['clock_gettime', 'getrandom', 'gettid', 'end']);
  });

  it('answers a replica\'s calls from batches of the primary\'s records, not with a round trip to the agent each', async () => {
    const calls = compileC('calls', tmp.dir);
    const recorded = await run(calls, ['20000'], recordEnv());
    await quiet(primary);
    const replayed = await run(calls, ['20000'], playbackEnv());
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(replica.counters.played).to.equal(sink.records('srv').length);
    // 40 000 calls, END included, in batches of up to a megabyte: a handful of round trips.
    expect(replica.counters.batches).to.be.within(1, 10);
    expect(divergences).to.deep.equal([]);
  });

  it('gives the replica the same output when its records arrive only as it runs', async () => {
    sink.hold();
    const replaying = run(nondet, [], playbackEnv());
    const recorded = await run(nondet, [], recordEnv());
    await sleep(50);
    sink.release();
    const replayed = await replaying;
    expect(replayed.code).to.equal(0);
    expect(replayed.stdout).to.equal(recorded.stdout);
  });
});
