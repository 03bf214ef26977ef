import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHIM_EXIT_FATAL, shimPath } from '../src/index.js';
import { compileC, nativeDir, run, tempDir } from './helpers.js';

describe('the shim in pass-through mode', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let nondet: string;

  before(() => {
    tmp = tempDir('pass');
    nondet = compileC('nondet', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());

  for (const mode of [undefined, '', 'off', 'passthrough']) {
    it(`leaves a program's behaviour unchanged when FTCP_NSW_MODE is ${mode === undefined ? 'unset' : `'${mode}'`}`, async () => {
      const bare = await run(nondet, ['properties'], { FTCP_NSW_MODE: undefined });
      // No agent listens on this path: pass-through never connects.
      const shimmed = await run(nondet, ['properties'], { LD_PRELOAD: shimPath(), FTCP_NSW_MODE: mode, FTCP_NSW_SOCKET: join(tmp.dir, 'none.sock') });
      expect(shimmed.stderr).to.equal('');
      expect(shimmed.code).to.equal(bare.code);
      expect(shimmed.stdout).to.equal(bare.stdout);
      expect(shimmed.stdout).to.not.contain(': no');
    });
  }

  it('exports exactly the calls the version script names, each with a comment saying why it is wrapped', () => {
    const out = execFileSync('nm', ['-D', '--defined-only', shimPath()], { encoding: 'utf8' });
    const exported = out
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop())
      .sort();
    const map = readFileSync(join(nativeDir, 'ftcp_nsw.map'), 'utf8');
    const globals = /global:([^]*?)local:/.exec(map)![1]!.split(/[;\s]+/).filter(Boolean).sort();
    expect(exported).to.deep.equal(globals);
    expect(globals).to.include.members(['clock_gettime', 'getrandom', 'getpid', 'fork', 'pthread_create', 'poll', 'epoll_wait', 'accept', 'send']);
    const source = readFileSync(join(nativeDir, 'ftcp_nsw.c'), 'utf8');
    for (const name of globals) {
      expect(source, name).to.match(new RegExp(`/\\*[\\s*]*Wrapped because:(?:(?!\\*/)[^])*\\*/\\s*NSW_EXPORT [^(]*\\b${name}\\(`));
    }
  });

  it('stops a recording program loudly when no agent listens', async () => {
    const r = await run(nondet, [], { LD_PRELOAD: shimPath(), FTCP_NSW_MODE: 'record', FTCP_NSW_SOCKET: join(tmp.dir, 'none.sock') });
    expect(r.code).to.equal(SHIM_EXIT_FATAL);
    expect(r.stderr).to.contain('cannot connect to the agent');
  });

  it('refuses an unknown FTCP_NSW_MODE at load time', async () => {
    const r = await run(nondet, [], { LD_PRELOAD: shimPath(), FTCP_NSW_MODE: 'recrod' });
    expect(r.code).to.equal(SHIM_EXIT_FATAL);
    expect(r.stderr).to.contain('FTCP_NSW_MODE must be');
  });
});
