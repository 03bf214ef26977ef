import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeStateDir, sweepStateDirs } from '../src/runtime/state-dir.js';

/** A pid that no process has now: a child that already exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('node state directories', () => {
  let parent: string;
  beforeEach(() => {
    parent = mkdtempSync(join(tmpdir(), 'ftcp-statedir-test-'));
  });
  afterEach(() => rmSync(parent, { recursive: true, force: true }));

  it('names its owner, so that a node killed fail-stop leaves a directory the next node can sweep', () => {
    const dir = makeStateDir('primary', parent);
    expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).to.equal(String(process.pid));
  });

  it("sweeps a dead owner's directory of the same role and leaves live owners', other roles' and unowned ones", () => {
    const dead = join(parent, 'ftcp-primary-dead');
    const live = join(parent, 'ftcp-primary-live');
    const otherRole = join(parent, 'ftcp-backup-dead');
    const unowned = join(parent, 'ftcp-primary-unowned');
    for (const d of [dead, live, otherRole, unowned]) mkdirSync(d);
    const gone = deadPid();
    writeFileSync(join(dead, 'owner.pid'), String(gone));
    writeFileSync(join(otherRole, 'owner.pid'), String(gone));
    writeFileSync(join(live, 'owner.pid'), String(process.pid));
    expect(sweepStateDirs('primary', parent)).to.deep.equal([dead]);
    expect([dead, live, otherRole, unowned].map((d) => existsSync(d))).to.deep.equal([false, true, true, true]);
  });
});
