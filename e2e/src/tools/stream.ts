#!/usr/bin/env node
/**
 * A seeded byte stream with a running sha256, for checking that every byte
 * crossed a wrapped connection intact. JSON events on stdout, one per line.
 *
 *   send --host H --port P --bytes N [--seed S] [--progress-mb M]
 *     events: connected, progress {sent}, done {bytes, sha256, ms}, error {code}
 *   sink --port P [--bind ADDR]
 *     events: listening, accept, progress {received}, done {bytes, sha256, ms}, error {code}
 */
import { createHash } from 'node:crypto';
import net from 'node:net';

function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`stream: --${name} is required\n`);
    process.exit(2);
  }
  return v;
}

/** Deterministic bytes from a seed (xorshift32), so both ends can be checked. */
function fillChunk(buf: Buffer, state: { x: number }): void {
  let x = state.x;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  state.x = x;
}

function send(): void {
  const total = Number(arg('bytes'));
  const every = Number(arg('progress-mb', '16')) * 1024 * 1024;
  const state = { x: Number(arg('seed', '1')) >>> 0 || 1 };
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(64 * 1024);
  let sent = 0;
  let nextProgress = every;
  const start = performance.now();
  const sock = net.connect({ host: arg('host'), port: Number(arg('port')) });
  sock.on('error', (e: NodeJS.ErrnoException) => {
    emit('error', { code: e.code, message: e.message });
    process.exit(1);
  });
  const pump = (): void => {
    while (sent < total) {
      const n = Math.min(chunk.length, total - sent);
      fillChunk(chunk, state);
      const piece = Buffer.from(chunk.subarray(0, n));
      hash.update(piece);
      sent += n;
      if (sent >= nextProgress) {
        emit('progress', { sent });
        nextProgress += every;
      }
      if (!sock.write(piece)) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.end(() => emit('done', { bytes: sent, sha256: hash.digest('hex'), ms: performance.now() - start }));
  };
  sock.on('connect', () => {
    emit('connected');
    pump();
  });
  sock.on('close', () => process.exit(0));
}

function sink(): void {
  const server = net.createServer((sock) => {
    emit('accept', { remote: sock.remoteAddress });
    const hash = createHash('sha256');
    let received = 0;
    let nextProgress = 16 * 1024 * 1024;
    const start = performance.now();
    sock.on('data', (d: Buffer) => {
      hash.update(d);
      received += d.length;
      if (received >= nextProgress) {
        emit('progress', { received });
        nextProgress += 16 * 1024 * 1024;
      }
    });
    sock.on('end', () => {
      emit('done', { bytes: received, sha256: hash.digest('hex'), ms: performance.now() - start });
      sock.end();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => emit('error', { code: e.code, message: e.message }));
  });
  server.listen(Number(arg('port')), arg('bind', '0.0.0.0'), () => emit('listening'));
}

if (process.argv[2] === 'send') send();
else if (process.argv[2] === 'sink') sink();
else {
  process.stderr.write('usage: stream send|sink ...\n');
  process.exit(2);
}
