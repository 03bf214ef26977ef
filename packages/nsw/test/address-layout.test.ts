/**
 * Record and playback run with one address layout (README "Address
 * layout"): what a program derives from addresses (OpenSSL's DRBG nonce,
 * Python's set order, a pointer it prints) is the same in the replica.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { compileC, tempDir } from './helpers.js';
import { exchange } from './clients.js';
import { recordAndReplay } from './server-replay.js';

/** An HTTP/1.0 GET over TLS; resolves with the plaintext response. */
function httpsGet(port: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const chunks: Buffer[] = [];
    sock.on('secureConnect', () => sock.write(`GET ${path} HTTP/1.0\r\n\r\n`));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

describe('the address layout of a replica', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('layout')));
  after(() => tmp.remove());

  it('gives a server that answers with addresses the primary\'s answer', async () => {
    const server = compileC('addresses', tmp.dir, ['-lpthread']);
    let got: Buffer = Buffer.alloc(0);
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: server, args: [String(port)] }),
      drive: async (port) => {
        got = await exchange(port, 'where?\n');
      },
      end: 'exit',
    });
    expect(got.toString()).to.match(/^stack=0x[0-9a-f]+ small=0x[0-9a-f]+ large=0x[0-9a-f]+ self=0x[0-9a-f]+ thread=0x[0-9a-f]+ thread-stack=0x[0-9a-f]+\n$/);
    expect(r.replayed.stderr).to.equal('');
    expect(r.divergences).to.deep.equal([]);
    expect(r.replayed.code).to.equal(0);
    expect(r.connections[0]!.replicaSent).to.deep.equal(got);
  });

  it('replays openssl s_server -WWW over TLS to the same bytes', async function () {
    if (!existsSync('/usr/bin/openssl')) this.skip();
    const key = join(tmp.dir, 'key.pem');
    const cert = join(tmp.dir, 'cert.pem');
    execFileSync('/usr/bin/openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    writeFileSync(join(tmp.dir, 'index.txt'), 'served over TLS\n'.repeat(50));
    const got: Buffer[] = [];
    const r = await recordAndReplay({
      dir: tmp.dir,
      server: (port) => ({ file: '/usr/bin/openssl', args: ['s_server', '-WWW', '-accept', String(port), '-cert', cert, '-key', key, '-quiet'], cwd: tmp.dir }),
      drive: async (port) => {
        for (let i = 0; i < 3; i++) got.push(await httpsGet(port, '/index.txt'));
      },
      end: 'crash',
    });
    for (const g of got) expect(g.toString()).to.contain('served over TLS');
    expect(r.divergences.map((d) => d.reason)).to.deep.equal([]);
    expect(r.connections).to.have.length(3);
    for (const c of r.connections) expect(c.replicaSent).to.deep.equal(c.clientGot);
  });
});
