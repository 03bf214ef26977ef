#!/usr/bin/env node
/**
 * A client of an echo server (native/echod.c) that checks every byte of both
 * directions and measures the longest silence in what comes back: the
 * failover gap as the client sees it (issue 5, e2e scenario 1; FT-TCP 6).
 *
 *   echo-client --host H --port P --bytes N [--seed S] [--rate-mbit R]
 *               [--progress-bytes B] [--timeout-ms T] [--trace FILE]
 *
 * It connects, sends N bytes of a seeded stream (xorshift32, the same as
 * tools/stream.ts) while reading the echo concurrently, and checks the echo
 * twice: a running sha256 of each direction, and a byte-by-byte compare of
 * every received chunk against the same seeded stream regenerated. Once
 * every byte has come back it closes its side (so any FIN from the server
 * before this point is the server's doing) and waits for the server's FIN.
 *
 * `--rate-mbit R` paces the sending to R Mbit/s so that a crash can land in
 * the middle of a stream; without it the client sends as fast as TCP takes
 * it. `--trace FILE` writes one CSV line `t_ms,received` per received chunk
 * (t in ms since the epoch), for sequence-against-time plots.
 *
 * JSON events on stdout, one per line, each with `t` (ms since the epoch):
 *   connected {localPort}
 *   progress  {sent, received}                every B bytes received (default 1 MiB)
 *   closing   {sent, received}                everything echoed; our FIN goes out now
 *   done      {sent, received, sha256Sent, sha256Received, ok, mismatchAt,
 *              maxGapMs, gapAt, gapEnd, gapOffset, gaps, firstByteAt, lastByteAt, ms}
 *   error     {code, message, sent, received}
 * `gapAt` and `gapEnd` are the arrival times (ms since the epoch, fractional)
 * of the chunks on either side of the longest gap, `gapOffset` the received
 * byte count at its start; `gaps` the five longest, longest first;
 * `mismatchAt` the offset of the first echoed byte that differs, or null.
 * Exit code 0 when `done` has ok true, 1 otherwise, 2 on bad arguments.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { pacedSender } from './paced-send.js';
import { emit, toolArgs, ToolEnd } from './tool-args.js';

const { get, has, num, required } = toolArgs('echo-client', process.argv.slice(2));

/** Wall-clock ms since the epoch with sub-millisecond resolution. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * A seeded byte stream (xorshift32, little-endian words) that can be taken in
 * pieces of any length; two instances with one seed yield the same bytes
 * however they are cut.
 */
class SeededBytes {
  private x: number;
  private block = Buffer.alloc(64 * 1024);
  private pos: number;

  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
    this.pos = this.block.length;
  }

  /** The next `n` bytes, in a fresh buffer. */
  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos === this.block.length) this.refill();
      const k = Math.min(n - filled, this.block.length - this.pos);
      this.block.copy(out, filled, this.pos, this.pos + k);
      this.pos += k;
      filled += k;
    }
    return out;
  }

  private refill(): void {
    let x = this.x;
    for (let i = 0; i < this.block.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.block.writeUInt32LE(x >>> 0, i);
    }
    this.x = x;
    this.pos = 0;
  }
}

interface Gap {
  readonly ms: number;
  readonly at: number;
  readonly end: number;
  readonly offset: number;
}

const host = required('host');
const port = num('port');
const total = num('bytes');
const seed = num('seed', 1);
const rateMbit = has('rate-mbit') ? num('rate-mbit') : undefined;
const progressEvery = Math.max(1, num('progress-bytes', 1024 * 1024));
const timeoutMs = num('timeout-ms', 120_000);
const traceFile = get('trace');
const CHUNK = 16 * 1024;

const sendStream = new SeededBytes(seed);
const expectStream = new SeededBytes(seed);
const hashSent = createHash('sha256');
const hashReceived = createHash('sha256');
let sent = 0;
let received = 0;
let mismatchAt: number | null = null;
let nextProgress = progressEvery;
let lastArrival: number | undefined;
let firstByteAt: number | undefined;
const gaps: Gap[] = [];
const trace: string[] = [];
let closing = false;
let startedAt = 0;

const sock = net.connect({ host, port, allowHalfOpen: true });
sock.setNoDelay(true);

function finish(code: number): void {
  end.finish(code, sock, () => {
    if (traceFile !== undefined) writeFileSync(traceFile, trace.join('\n') + '\n');
  });
}

function error(code: string, message: string): void {
  if (end.finished) return;
  emit('error', { code, message, sent, received });
  finish(1);
}

const end = new ToolEnd(timeoutMs, () => error('ETIMEDOUT', `not done within ${timeoutMs} ms`));

/** Keeps the five longest gaps, longest first. */
function noteGap(g: Gap): void {
  if (gaps.length === 5 && g.ms <= gaps[4]!.ms) return;
  gaps.push(g);
  gaps.sort((a, b) => b.ms - a.ms);
  if (gaps.length > 5) gaps.pop();
}

/** Reading the echo never waits on sending (see {@link pacedSender}). */
const pump = pacedSender({
  sock,
  total,
  chunk: CHUNK,
  rateMbit,
  burstBytes: 256 * 1024,
  elapsedMs: () => now() - startedAt,
  sent: () => sent,
  take: (n) => {
    const piece = sendStream.take(n);
    hashSent.update(piece);
    sent += n;
    return piece;
  },
  finished: () => end.finished,
});

function maybeClose(): void {
  if (closing || sent < total || received < total) return;
  closing = true;
  emit('closing', { sent, received });
  sock.end();
}

sock.on('connect', () => {
  startedAt = now();
  emit('connected', { localPort: sock.localPort });
  pump();
  maybeClose();
});

sock.on('data', (d: Buffer) => {
  const t = now();
  if (lastArrival !== undefined) noteGap({ ms: t - lastArrival, at: lastArrival, end: t, offset: received });
  else firstByteAt = t;
  lastArrival = t;
  hashReceived.update(d);
  if (mismatchAt === null) {
    const want = expectStream.take(d.length);
    if (!want.equals(d)) {
      let i = 0;
      while (i < d.length && d[i] === want[i]) i++;
      mismatchAt = received + i;
    }
  }
  received += d.length;
  if (traceFile !== undefined) trace.push(`${t.toFixed(3)},${received}`);
  if (mismatchAt === null && received > total) mismatchAt = total;
  while (received >= nextProgress) {
    emit('progress', { sent, received });
    nextProgress += progressEvery;
  }
  maybeClose();
});

sock.on('end', () => {
  if (!closing) {
    error('EARLY_EOF', `the server closed after ${received} of ${total} bytes echoed`);
    return;
  }
  const sha256Sent = hashSent.digest('hex');
  const sha256Received = hashReceived.digest('hex');
  const ok = mismatchAt === null && sent === total && received === total && sha256Sent === sha256Received;
  const top = gaps[0];
  emit('done', {
    sent,
    received,
    sha256Sent,
    sha256Received,
    ok,
    mismatchAt,
    maxGapMs: top?.ms ?? 0,
    gapAt: top?.at ?? null,
    gapEnd: top?.end ?? null,
    gapOffset: top?.offset ?? null,
    gaps,
    firstByteAt: firstByteAt ?? null,
    lastByteAt: lastArrival ?? null,
    ms: now() - startedAt,
  });
  finish(ok ? 0 : 1);
});

sock.on('error', (e: NodeJS.ErrnoException) => error(e.code ?? 'EUNKNOWN', e.message));
sock.on('close', () => error('ECLOSED', 'the socket closed before the server finished'));
