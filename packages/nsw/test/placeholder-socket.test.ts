/**
 * A replica's replicated descriptor is a placeholder until promotion, not a
 * TCP socket: every socket-level call a server makes on its connection must
 * still get the primary's answer (README "What is wrapped"), and a replica
 * that stops where its primary went on must never look like a clean exit.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { SHIM_EXIT_DIVERGED, shimPath } from '../src/index.js';
import { agentPair, compileC, quiet, run, shimEnv, tempDir } from './helpers.js';
import { execFileP, exchange } from './clients.js';
import { recordAndReplay } from './server-replay.js';

describe('a replica\'s placeholder socket', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('placeholder')));
  after(() => tmp.remove());

  it('answers TCP options, getsockopt, queue ioctls and shutdown as the primary\'s socket did', async () => {
    const server = compileC('sockopts', tmp.dir);
    let got: Buffer = Buffer.alloc(0);
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: server, args: [String(port)] }),
      drive: async (port) => {
        got = await exchange(port, 'hello\n');
      },
      end: 'exit',
    });
    expect(r.recorded.stderr).to.equal('');
    expect(got.toString()).to.match(/^hello: nodelay=1 keepalive=1 domain=2 type=1 sndbuf=131072 cc=cubic state=1 /);
    expect(r.replayed.stderr).to.equal('');
    expect(r.replayed.code).to.equal(0);
    expect(r.replayed.stdout).to.equal(r.recorded.stdout);
    expect(r.divergences).to.deep.equal([]);
    expect(r.connections).to.have.length(1);
    expect(r.connections[0]!.replicaSent).to.deep.equal(got);
  });

  it('replays iperf3 -s -1 (TCP_NODELAY, TCP_INFO, CPU time) to the same report', async function () {
    if (!existsSync('/usr/bin/iperf3')) this.skip();
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: '/usr/bin/iperf3', args: ['-s', '-1', '-p', String(port)] }),
      drive: async (port) => {
        await execFileP('/usr/bin/iperf3', ['-c', '127.0.0.1', '-p', String(port), '-n', '1M']);
      },
      end: 'exit',
    });
    expect(r.recorded.code).to.equal(0);
    expect(r.replayed.stderr).to.equal('');
    expect(r.replayed.code).to.equal(0);
    expect(r.replayed.stdout).to.equal(r.recorded.stdout);
    expect(r.divergences).to.deep.equal([]);
    // The control connection's JSON results, and the data connection the client only wrote to.
    expect(r.connections).to.have.length(2);
    for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
    expect(r.connections[1]!.replicaRead).to.be.greaterThan(0);
  });

  it('reports a replica that exits cleanly where its primary went on as diverged', async () => {
    const early = compileC('early_exit', tmp.dir);
    const pair = await agentPair(tmp.dir);
    try {
      const recorded = await run(early, [], shimEnv(shimPath(), 'record', pair.primary.options.socketPath));
      expect(recorded.code).to.equal(0);
      await quiet(pair.primary);
      const replayed = await run(early, [], { ...shimEnv(shimPath(), 'playback', pair.replica.options.socketPath), EARLY_EXIT: '1' });
      // The replica's exit is a call (END) the primary did not make there: it stops as diverged, not with its 0.
      expect(replayed.code).to.equal(SHIM_EXIT_DIVERGED);
      expect(replayed.stderr).to.contain('FTCP_ERR_DIVERGENCE').and.to.contain('the primary called getpid, the replica end');
      await quiet(pair.replica);
      expect(pair.divergences).to.have.length(1);
      expect(pair.divergences[0]).to.include({ stream: 'srv', callNo: 2 });
      expect(pair.replica.canTakeOver).to.equal(false);
    } finally {
      await pair.close();
    }
  });
});
