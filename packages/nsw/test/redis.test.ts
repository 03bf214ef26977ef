/**
 * redis-server recorded and played back: several threads (the bio threads,
 * jemalloc's), the clock read through the vDSO on every event, and real
 * clients. Every run must replay without divergence.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { tempDir } from './helpers.js';
import { execFileP } from './clients.js';
import { recordAndReplay } from './server-replay.js';

const redis = '/usr/bin/redis-server';
const cli = '/usr/bin/redis-cli';

describe('redis-server under the shim', function () {
  this.timeout(120000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('redis')));
  after(() => tmp.remove());

  it('replays redis under load with lazy frees in its bio thread (stress)', async function () {
    if (!existsSync(redis) || !existsSync('/usr/bin/redis-benchmark')) this.skip();
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: redis, args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp.dir, '--lazyfree-lazy-user-del', 'yes'], cwd: tmp.dir }),
      drive: async (port) => {
        const big = Array.from({ length: 3000 }, (_, i) => `element-${i}`);
        for (let k = 0; k < 4; k++) await execFileP(cli, ['-p', String(port), 'RPUSH', `big${k}`, ...big]);
        await Promise.all([
          execFileP('/usr/bin/redis-benchmark', ['-p', String(port), '-n', '3000', '-c', '4', '-t', 'set,get,lpush', '-q']),
          (async () => {
            for (let k = 0; k < 4; k++) await execFileP(cli, ['-p', String(port), 'DEL', `big${k}`]);
          })(),
        ]);
      },
      end: 'crash',
      timeoutMs: 90000,
    });
    expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
    for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
  });

  for (const run of [1, 2, 3]) {
    it(`replays a session of real redis-cli commands with no divergence and the same replies (run ${run})`, async function () {
      if (!existsSync(redis) || !existsSync(cli)) this.skip();
      const r = await recordAndReplay({
        dir: tmp.dir,
        server: (port) => ({ file: redis, args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp.dir], cwd: tmp.dir }),
        drive: async (port) => {
          const c = (...args: string[]): Promise<{ stdout: string }> => execFileP(cli, ['-p', String(port), ...args]);
          await c('SET', 'greeting', 'hello');
          await c('INCR', 'counter');
          await c('LPUSH', 'list', 'a', 'b', 'c');
          await c('SET', 'expiring', 'x', 'PX', '50');
          await new Promise((resolve) => setTimeout(resolve, 120));
          await c('GET', 'expiring');
          await c('UNLINK', 'list');
          const got = await c('GET', 'greeting');
          expect(got.stdout).to.equal('hello\n');
        },
        end: 'crash',
        timeoutMs: 60000,
      });
      expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
      expect(r.connections).to.have.length(7);
      for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
    });
  }
});
