import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ftcp = join(dirname(fileURLToPath(import.meta.url)), '../../../../bin/ftcp');

function run(args: string[], env: Record<string, string> = {}): { status: number | null; out: string } {
  const r = spawnSync(ftcp, args, { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('ftcp primary flags', function () {
  this.timeout(60_000);

  it('refuses a primary without a server command, saying what to give', () => {
    const r = run(['primary', '--service', '10.0.0.100:6379', '--buffer', 'tcp://127.0.0.1:1']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/give the server command after --/);
  });

  it('refuses a service that is not VIP:PORT with exit code 2', () => {
    const r = run(['primary', '--service', '10.0.0.100', '--buffer', 'tcp://127.0.0.1:1', '--', 'true']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/is not VIP:PORT/);
  });

  it('refuses an ack strategy it does not have and names the ones it has', () => {
    const r = run(['primary', '--ack', 'fast', '--service', '10.0.0.100:6379', '--buffer', 'tcp://127.0.0.1:1', '--', 'true']);
    expect(r.status).to.equal(2);
    expect(r.out).to.match(/eager, delayed, lazy, hold/);
  });

  it('refuses a buffer endpoint without tcp:// or without a port before it starts anything, saying what to write', () => {
    for (const [args, env] of [
      [['primary', '--service', '10.0.0.100:6379', '--buffer', '10.0.1.2:7400', '--', 'true'], {}],
      [['backup', '--mode', 'hot', '--service', '10.0.0.100:6379', '--', 'true'], { FTCP_BUFFER: 'tcp://10.0.1.2' }],
      [['buffer', 'ping', '--buffer', '10.0.1.2:7400'], {}],
      [['status', '--buffer', 'tcp://10.0.1.2:0'], {}],
    ] as const) {
      const r = run([...args], env);
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.out, args.join(' ')).to.match(/give tcp:\/\/IP:PORT|needs the buffer's real port/);
    }
  });
});
