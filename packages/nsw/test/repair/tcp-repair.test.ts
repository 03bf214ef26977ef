import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const native = join(dirname(fileURLToPath(import.meta.url)), '../../../native/repair');

describe('ftcp_tcp_repair', function () {
  this.timeout(60_000);
  const ns = `ftcp-repair-${process.pid}`;
  let dir: string;
  let check: string;

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'ftcp-repair-'));
    check = join(dir, 'repair_check');
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-O2', '-o', check, join(native, 'repair_check.c'), join(native, 'tcp_repair.c')]);
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('takes over a live connection so the client sees every byte in order and no error', () => {
    for (let round = 0; round < 3; round++) {
      const r = spawnSync('ip', ['netns', 'exec', ns, check], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, `${r.stdout}${r.stderr}`).to.equal(0);
      expect(r.stdout).to.include('ok: the client saw every byte in order across the takeover');
      // Window scale, SACK and timestamps were negotiated, so all were carried over.
      expect(r.stdout).to.match(/sack 1 ts 1 unread 3000/);
    }
  });

  it('names the step that failed when the local address is not this host\'s', () => {
    const r = spawnSync('ip', ['netns', 'exec', ns, check, 'bad-bind'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.include('refused at bind');
  });
});
