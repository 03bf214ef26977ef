import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_FAILURE_TIMEOUT_MS } from '@ftcp/e2e';

const ftcp = join(dirname(fileURLToPath(import.meta.url)), '../../../../bin/ftcp');

function run(args: string[], timeout = 20_000): { status: number | null; out: string } {
  const r = spawnSync(ftcp, args, { encoding: 'utf8', timeout });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('ftcp backup flags', function () {
  this.timeout(30_000);

  it('refuses a backup without a server command, saying what to give', () => {
    const r = run(['backup', '--mode', 'hot', '--service', '10.0.0.100:6379', '--buffer', 'tcp://127.0.0.1:1']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/give the server command after --/);
  });

  it('refuses a service that is not VIP:PORT with exit code 2', () => {
    const r = run(['backup', '--mode', 'cold', '--service', 'redis:6379', '--buffer', 'tcp://127.0.0.1:1', '--', 'true']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/is not VIP:PORT/);
  });

  it('refuses a mode other than hot or cold', () => {
    const r = run(['backup', '--mode', 'warm', '--service', '10.0.0.100:6379', '--buffer', 'tcp://127.0.0.1:1', '--', 'true']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/hot, cold/);
  });
});

describe('ftcp demo', function () {
  this.timeout(120_000);

  it('crashes the primary host mid-stream and prints a timeline in which the client lost nothing', function () {
    if (process.getuid?.() !== 0) this.skip();
    // The tests' failure timeout, not the demo's 30 ms: CI machines are loaded.
    const r = run(['demo', '--bytes', '8MiB', '--rate-mbit', '40', '--failure-timeout', String(TEST_FAILURE_TIMEOUT_MS)], 110_000);
    expect(r.status, r.out).to.equal(0);
    expect(r.out).to.match(/primary host crashed/);
    expect(r.out).to.match(/backup promoted to epoch \d+/);
    expect(r.out).to.match(/1 of 1 connections rebuilt/);
    expect(r.out).to.match(/sha256 matches both ways/);
    expect(r.out).to.include('The client never saw an error, a reset or a lost byte.');
  });
});
