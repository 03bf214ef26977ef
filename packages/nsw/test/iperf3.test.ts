/**
 * iperf3 3.12 recorded and played back with a real uploading client.
 * Its server loop runs the timers when the timeout it gave `select` reads 0
 * after the call: Linux writes there the time `select` did not sleep, which
 * is 0 when data and the deadline arrive together. A replica whose `select`
 * left the timeout as it was skipped the timers and stopped as diverged (`the
 * primary called clock_gettime, the replica select`) in five runs of six.
 * A 0.1 s report interval and 8 KiB writes make that moment frequent, so
 * three runs of two seconds show it.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { tempDir } from './helpers.js';
import { execFileP } from './clients.js';
import { recordAndReplay } from './server-replay.js';

const iperf3 = '/usr/bin/iperf3';

describe('iperf3 under the shim', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('iperf3')));
  after(() => tmp.remove());

  for (const run of [1, 2, 3]) {
    it(`replays iperf3 -s -1 receiving a paced upload, whose timers follow what select left in its timeout (run ${run})`, async function () {
      if (!existsSync(iperf3)) this.skip();
      const r = await recordAndReplay({
        dir: tmp.dir,
        server: (port) => ({ file: iperf3, args: ['-s', '-1', '-p', String(port), '-i', '0.1', '--forceflush'] }),
        drive: async (port) => {
          const { stdout } = await execFileP(iperf3, ['-c', '127.0.0.1', '-p', String(port), '-t', '2', '-b', '100M', '-l', '8K', '-J']);
          expect((JSON.parse(stdout) as { error?: string }).error).to.equal(undefined);
        },
        end: 'exit',
        timeoutMs: 40000,
      });
      expect(r.divergences.map((d) => `${d.stream} ${d.callNo}: ${d.reason}`), r.replayed.stderr).to.deep.equal([]);
      expect(r.replayed.code).to.equal(0);
      expect(r.replayed.stdout).to.equal(r.recorded.stdout);
      expect(r.connections).to.have.length(2);
      for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
    });
  }
});
