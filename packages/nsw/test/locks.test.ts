/**
 * File-lock order (FT-TCP 3.8): a replica's lock operations run in the
 * primary's order, whatever the replica's own schedule would give.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NswAgent, SHIM_EXIT_DIVERGED, shimPath, type Divergence } from '../src/index.js';
import { CallKind, decodeCallData, decodeLockPosition } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { agentPair, compileC, quiet, run, shimEnv, tempDir, type AgentPair } from './helpers.js';

describe('file locks under the shim', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let locks: string;
  let sink: MemoryRecordSink;
  let primary: NswAgent;
  let replica: NswAgent;
  let divergences: Divergence[];

  before(() => {
    tmp = tempDir('locks');
    locks = compileC('locks', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());
  let pair: AgentPair;
  beforeEach(async () => {
    pair = await agentPair(tmp.dir);
    ({ sink, primary, replica, divergences } = pair);
  });
  afterEach(() => pair.close());

  /** A fresh lock file holding the counter 0. */
  const lockFile = (name: string): string => {
    const f = join(tmp.dir, name);
    writeFileSync(f, '0\n');
    return f;
  };

  for (const variant of ['flock-threads', 'ofd-threads', 'fcntl-processes']) {
    it(`replays ${variant} in the primary's lock order, although the replica's own schedule would let the other side win`, async () => {
      // The primary: A locks at once and holds the lock while B tries (in vain) 50 ms later, then waits for it.
      const recorded = await run(locks, [variant, lockFile(`${variant}-p`)], { ...shimEnv(shimPath(), 'record', primary.options.socketPath), LOCKS_DELAY_A: '0', LOCKS_DELAY_B: '50' });
      expect(recorded.stderr).to.equal('');
      expect(recorded.code).to.equal(0);
      expect(recorded.stdout).to.match(/^B: try=-1 \((EAGAIN|EACCES)\) lock=0 count=2 unlock=0\nA: lock=0 count=1 unlock=0\n$/);
      await quiet(primary);
      // The replica: B would try 150 ms before A locks. The recorded order makes B's attempt wait for A's lock.
      const replayed = await run(locks, [variant, lockFile(`${variant}-r`)], { ...shimEnv(shimPath(), 'playback', replica.options.socketPath), LOCKS_DELAY_A: '150', LOCKS_DELAY_B: '0' });
      expect(replayed.stderr).to.equal('');
      expect(replayed.code).to.equal(0);
      expect(replayed.stdout).to.equal(recorded.stdout);
      expect(divergences).to.deep.equal([]);
      expect(replica.canTakeOver).to.equal(true);
    });
  }

  it('records each lock call\'s positions in one order for the threads of a process: the contended attempt, then its grant after the holder\'s release', async () => {
    await run(locks, ['flock-threads', lockFile('order-p')], { ...shimEnv(shimPath(), 'record', primary.options.socketPath), LOCKS_DELAY_A: '0', LOCKS_DELAY_B: '50' });
    await quiet(primary);
    const lockRecs = (stream: string) =>
      sink.records(stream).map(decodeCallData).filter((r) => r.kind === CallKind.LOCK).map((r) => ({ op: Number(r.arg) & 0xffff, ...decodeLockPosition(r.payload) }));
    const a = lockRecs('srv/t1');
    const b = lockRecs('srv/t2');
    expect(a.map((r) => r.op)).to.deep.equal([2 /* LOCK_EX */, 8 /* LOCK_UN */]);
    expect(b.map((r) => r.op)).to.deep.equal([6 /* LOCK_EX | LOCK_NB */, 2, 8]);
    expect(new Set([...a, ...b].map((r) => r.domain)).size).to.equal(1);
    // A locks (1); B's try (2) and its blocking lock's attempt (3) find it held; A unlocks (4); B is granted (5) and unlocks (6).
    expect(a.map((r) => [r.attempt, r.grant])).to.deep.equal([[1, 0], [4, 0]]);
    expect(b.map((r) => [r.attempt, r.grant])).to.deep.equal([[2, 0], [3, 5], [6, 0]]);
  });

  it('stops a replica whose lock attempt succeeds where the primary\'s found the lock held, and refuses to take over', async () => {
    await run(locks, ['flock-threads', lockFile('held-p')], { ...shimEnv(shimPath(), 'record', primary.options.socketPath), LOCKS_DELAY_A: '0', LOCKS_DELAY_B: '50' });
    await quiet(primary);
    // On the replica side A locks another file: B's attempt finds nothing held.
    const replayed = await run(locks, ['flock-threads', lockFile('held-r')], {
      ...shimEnv(shimPath(), 'playback', replica.options.socketPath), LOCKS_FILE_A: lockFile('elsewhere'), LOCKS_DELAY_A: '0', LOCKS_DELAY_B: '0',
    });
    expect(replayed.code).to.equal(SHIM_EXIT_DIVERGED);
    expect(replayed.stderr).to.contain('FTCP_ERR_DIVERGENCE').and.to.match(/lock returned -1 \(errno 11\) on the primary, 0 \(errno 0\) on the replica/);
    expect(divergences).to.have.length(1);
    expect(divergences[0]!.stream).to.equal('srv/t2');
    expect(replica.canTakeOver).to.equal(false);
  });
});
