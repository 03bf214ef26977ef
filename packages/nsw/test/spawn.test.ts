/**
 * Children started without fork(): posix_spawn, posix_spawnp, system,
 * popen, and an exec given its own environment. Each child is a stream of
 * its own, named by spawn (or fork) order, so a replica's children find the
 * primary's records.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { NswAgent, shimPath, type Divergence } from '../src/index.js';
import { CallKind, decodeCallData } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { agentPair, compileC, quiet, run, shimEnv, tempDir, type AgentPair } from './helpers.js';

describe('spawned children under the shim', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let prog: string;
  let sink: MemoryRecordSink;
  let primary: NswAgent;
  let replica: NswAgent;
  let divergences: Divergence[];
  let badInput: string[];

  before(() => {
    tmp = tempDir('spawn');
    prog = compileC('spawn', tmp.dir);
  });
  after(() => tmp.remove());
  let pair: AgentPair;
  beforeEach(async () => {
    pair = await agentPair(tmp.dir);
    ({ sink, primary, replica, divergences } = pair);
    badInput = [];
    for (const a of [primary, replica]) a.on('bad-input', (e: { code: string }) => badInput.push(e.code));
  });
  afterEach(() => pair.close());

  it('names the children of posix_spawn, posix_spawnp, system and popen by spawn order, and replays them to the same output', async () => {
    const recorded = await run(prog, ['spawn'], shimEnv(shimPath(), 'record', primary.options.socketPath));
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    await quiet(primary);
    const names = sink.streamNames();
    expect(names).to.include.members(['srv', 'srv/s1', 'srv/s2']);
    // system and popen run "/bin/sh -c": the shell is the spawned stream, the program it execs its image.
    expect(names.filter((n) => n.startsWith('srv/s3'))).to.have.length.of.at.least(1);
    expect(names.filter((n) => n.startsWith('srv/s4'))).to.have.length.of.at.least(1);
    expect(names.filter((n) => n.startsWith('srv/e'))).to.deep.equal([]);
    expect(badInput).to.deep.equal([]);
    const spawns = sink.records('srv').map(decodeCallData).filter((r) => r.kind === CallKind.SPAWN);
    expect(spawns.map((r) => r.result)).to.deep.equal([0n, 0n, 0n, 0n]);
    const pids = spawns.map((r) => r.payload.readInt32LE(0));
    expect(recorded.stdout).to.contain(`posix_spawn: pid=${pids[0]} waited=1 exit=7`).and.to.contain(`posix_spawnp: pid=${pids[1]} waited=1 exit=7`);
    expect(recorded.stdout).to.contain('system: exit=7').and.to.contain('pclose: exit=7').and.to.contain('popen read: child D: pid=');

    const replayed = await run(prog, ['spawn'], shimEnv(shimPath(), 'playback', replica.options.socketPath));
    expect(replayed.stderr).to.equal('');
    expect(replayed.code).to.equal(0);
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(divergences).to.deep.equal([]);
    expect(badInput).to.deep.equal([]);
  });

  it('names the image a vfork child execs by spawn order, as CPython\'s subprocess starts children', async () => {
    const recorded = await run(prog, ['vfork'], shimEnv(shimPath(), 'record', primary.options.socketPath));
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    await quiet(primary);
    expect(sink.streamNames()).to.include.members(['srv/s1', 'srv/s2']).and.not.to.include('srv/e');
    expect(badInput).to.deep.equal([]);
    // vfork's pid is not recorded: the replica's parent sees its own children's pids, so only the children's lines must agree.
    const replayed = await run(prog, ['vfork'], shimEnv(shimPath(), 'playback', replica.options.socketPath));
    expect(replayed.stderr).to.equal('');
    const children = (out: string): string[] => out.split('\n').filter((l) => l.startsWith('child '));
    expect(children(replayed.stdout)).to.deep.equal(children(recorded.stdout)).and.to.have.length(2);
    expect(divergences).to.deep.equal([]);
  });

  it('names the image a forked child execs with an environment of its own after that child, not after its parent', async () => {
    const recorded = await run(prog, ['forkexec'], shimEnv(shimPath(), 'record', primary.options.socketPath));
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    await quiet(primary);
    expect(sink.streamNames()).to.include.members(['srv', 'srv/f1/e', 'srv/f2/e']);
    expect(badInput).to.deep.equal([]);
    const replayed = await run(prog, ['forkexec'], shimEnv(shimPath(), 'playback', replica.options.socketPath));
    expect(replayed.stderr).to.equal('');
    expect(replayed.stdout).to.equal(recorded.stdout);
    expect(divergences).to.deep.equal([]);
  });
});
