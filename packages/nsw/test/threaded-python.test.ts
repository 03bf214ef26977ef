/**
 * A server that starts a thread per request (CPython's ThreadingHTTPServer,
 * the default of `python3 -m http.server`): each thread's stream must be
 * the same in the replica whatever the scheduling of the threads and of
 * CPython's GIL.
 */
import { expect } from 'chai';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';
import { httpGet } from './clients.js';
import { recordAndReplay } from './server-replay.js';

const python = '/usr/bin/python3';

describe('a thread-per-request Python server', function () {
  this.timeout(90000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    tmp = tempDir('pyhttp');
    writeFileSync(join(tmp.dir, 'file.txt'), 'a file served by http.server\n'.repeat(200));
  });
  after(() => tmp.remove());

  it('replays python3 -m http.server serving concurrent requests with no divergence and the same responses', async function () {
    if (!existsSync(python)) this.skip();
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: python, args: ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', tmp.dir] }),
      drive: async (port) => {
        for (let round = 0; round < 3; round++) {
          const got = await Promise.all([0, 1, 2, 3].map(() => httpGet(port, '/file.txt')));
          for (const g of got) expect(g.toString()).to.match(/^HTTP\/1.0 200 OK\r\n/);
        }
      },
      end: 'crash',
      timeoutMs: 60000,
    });
    expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
    expect(r.connections).to.have.length(12);
    for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
  });
});
