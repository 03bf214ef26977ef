/**
 * A thread's clock read that is only the deadline of its next timed wait,
 * caught between the read and the wait by another thread's output commit
 * (which records it: what the output shows may depend on it). The replica
 * must still play the thread's stream through, whatever it does next.
 */
import { expect } from 'chai';
import { CLOCK_DEADLINE_MARK, callKindName, decodeCallData } from '../src/protocol.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, compileC } from './helpers.js';
import { exchange } from './clients.js';
import { recordAndReplay } from './server-replay.js';

describe('a deadline read recorded by another thread\'s output commit', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  let program: string;
  before(() => {
    tmp = tempDir('deadline');
    program = compileC('deadline_race', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());

  it('replays a thread that waits on that deadline and then makes another call, with no divergence and the same reply', async () => {
    let got: Buffer = Buffer.alloc(0);
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: program, args: [String(port)] }),
      drive: async (port) => {
        got = await exchange(port, 'hello\n');
      },
      end: 'exit',
    });
    expect(r.recorded.code, r.recorded.stderr).to.equal(0);
    // The read as the commit recorded it, then the mark its thread added at the wait.
    const thread = r.sink.records('srv/t1').map(decodeCallData).map((c) => [callKindName(c.kind), c.arg]);
    expect(thread.slice(0, 3)).to.deep.equal([['clock_gettime', 0n], ['clock_gettime', CLOCK_DEADLINE_MARK], ['getpid', 0n]]);
    expect(got.toString()).to.match(/^ok\npid \d+\n$/);
    expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
    expect(r.replayed.code, r.replayed.stderr).to.equal(0);
    expect(r.connections).to.have.length(1);
    expect(r.connections[0]!.replicaSent).to.deep.equal(got);
  });

  for (const [skip, what] of [
    ['read', 'makes no such read and waits with a deadline of its own'],
    ['wait', 'reads the clock and makes its next call without waiting'],
  ] as const) {
    it(`replays that thread where the replica's thread ${what}, with no divergence`, async () => {
      const flag = join(tmp.dir, `replaying-${skip}`);
      let got: Buffer = Buffer.alloc(0);
      const r = await recordAndReplay({
        dir: tmp.dir,
        server: (port) => ({ file: program, args: [String(port), flag, skip] }),
        drive: async (port) => {
          got = await exchange(port, 'hello\n');
          writeFileSync(flag, '');
        },
        end: 'exit',
      });
      expect(r.recorded.code, r.recorded.stderr).to.equal(0);
      expect(r.sink.records('srv/t1').map(decodeCallData).map((c) => c.arg)).to.include(CLOCK_DEADLINE_MARK);
      expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
      expect(r.replayed.code, r.replayed.stderr).to.equal(0);
      expect(r.connections[0]!.replicaSent).to.deep.equal(got);
    });
  }
});
