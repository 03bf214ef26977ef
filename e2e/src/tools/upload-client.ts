#!/usr/bin/env node
/**
 * A client that uploads a seeded byte stream to a digest server
 * ({@link DIGEST_SINK_SERVER} in cold-rollforward.ts) and checks the
 * server's sha256 of what it received against its own: every byte crossed,
 * in order, once.
 *
 *   upload-client --host H --port P --bytes N [--seed S] [--rate-mbit R]
 *                 [--progress-bytes B] [--timeout-ms T]
 *
 * It connects, sends N bytes of a seeded stream (xorshift32, as
 * tools/stream.ts), closes its side, and reads the server's one reply line
 * `<bytes> <sha256 hex>` until the server closes. The upload keeps the
 * client's socket full of unacknowledged data, so a silent server makes its
 * TCP retransmit and, after `net.ipv4.tcp_retries2` of its host, give up
 * with ETIMEDOUT: what a takeover has to keep from happening.
 *
 * JSON events on stdout, one per line, each with `t` (ms since the epoch):
 *   connected {localPort}
 *   progress  {sent}                          every B bytes written (default 1 MiB)
 *   closing   {sent}                          everything written; our FIN goes out now
 *   done      {sent, sha256Sent, serverBytes, serverSha256, ok, ms}
 *   error     {code, message, sent}           `code` is the socket's (ETIMEDOUT, ECONNRESET, ...),
 *                                             DEADLINE for `--timeout-ms`, EARLY_EOF, BAD_REPLY
 * Exit code 0 when `done` has ok true, 1 otherwise, 2 on bad arguments.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { pacedSender } from './paced-send.js';
import { emit, toolArgs, ToolEnd } from './tool-args.js';

const { has, num, required } = toolArgs('upload-client', process.argv.slice(2));

const host = required('host');
const port = num('port');
const total = num('bytes');
const seed = num('seed', 1);
const rateMbit = has('rate-mbit') ? num('rate-mbit') : undefined;
const progressEvery = Math.max(1, num('progress-bytes', 1024 * 1024));
const timeoutMs = num('timeout-ms', 120_000);
const CHUNK = 64 * 1024;

/** xorshift32 over little-endian words, as tools/stream.ts: the same seed gives the same bytes. */
let x = seed >>> 0 || 1;
function nextChunk(n: number): Buffer {
  const b = Buffer.allocUnsafe(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return n === CHUNK ? b : b.subarray(0, n);
}

const hashSent = createHash('sha256');
let sent = 0;
let nextProgress = progressEvery;
let closing = false;
let startedAt = 0;
const reply: Buffer[] = [];

const sock = net.connect({ host, port, allowHalfOpen: true });
sock.setNoDelay(true);

const end = new ToolEnd(timeoutMs, () => error('DEADLINE', `not done within ${timeoutMs} ms`));

function error(code: string, message: string): void {
  if (end.finished) return;
  emit('error', { code, message, sent });
  end.finish(1, sock);
}

/** The upload, at the rate asked; our FIN follows the last byte. */
const pump = pacedSender({
  sock,
  total,
  chunk: CHUNK,
  rateMbit,
  burstBytes: 1024 * 1024,
  elapsedMs: () => performance.now() - startedAt,
  sent: () => sent,
  take: (n) => {
    const piece = nextChunk(n);
    hashSent.update(piece);
    sent += n;
    while (sent >= nextProgress) {
      emit('progress', { sent });
      nextProgress += progressEvery;
    }
    return piece;
  },
  finished: () => end.finished,
  allSent: () => {
    if (closing) return;
    closing = true;
    emit('closing', { sent });
    sock.end();
  },
});

sock.on('connect', () => {
  startedAt = performance.now();
  emit('connected', { localPort: sock.localPort });
  pump();
});

sock.on('data', (d: Buffer) => {
  reply.push(d);
});

sock.on('end', () => {
  if (!closing) {
    error('EARLY_EOF', `the server closed after ${sent} of ${total} bytes were written`);
    return;
  }
  const text = Buffer.concat(reply).toString('utf8').trim();
  const m = /^(\d+) ([0-9a-f]{64})$/.exec(text);
  if (m === null) {
    error('BAD_REPLY', `the server replied ${JSON.stringify(text.slice(0, 200))}`);
    return;
  }
  const sha256Sent = hashSent.digest('hex');
  const serverBytes = Number(m[1]);
  const serverSha256 = m[2]!;
  const ok = sent === total && serverBytes === total && serverSha256 === sha256Sent;
  emit('done', { sent, sha256Sent, serverBytes, serverSha256, ok, ms: performance.now() - startedAt });
  end.finish(ok ? 0 : 1, sock);
});

sock.on('error', (e: NodeJS.ErrnoException) => error(e.code ?? 'EUNKNOWN', e.message));
sock.on('close', () => error('ECLOSED', 'the socket closed before the server replied'));
