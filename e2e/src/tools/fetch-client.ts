#!/usr/bin/env node
/**
 * Fetches one file with a plain HTTP/1.0 GET, over TLS or not, and checks
 * its length and sha256 (issue 5's e2e scenario 4: `openssl s_server -WWW`
 * streaming over TLS). Over TLS any corrupted or replayed byte breaks a
 * record's MAC, so a stream that arrives whole also says the encryption
 * state survived.
 *
 *   fetch-client --host H --port P --path /F --expect-bytes N --expect-sha256 HEX
 *                [--tls] [--ca FILE] [--progress-bytes B] [--timeout-ms T]
 *
 * It sends `GET /F HTTP/1.0`, reads the response to the server's close,
 * splits the header from the body at the first blank line, and hashes the
 * body as it comes. With `--tls`, the server's certificate must chain to
 * `--ca` (a self-signed certificate is its own CA; its name is not checked).
 *
 * JSON events on stdout, one per line, each with `t` (ms since the epoch):
 *   connected {localPort, protocol, cipher}
 *   progress  {received}                         every B body bytes (default 1 MiB)
 *   done      {status, received, sha256, ok, mismatch, maxGapMs, gapAt, gaps, ms}
 *   error     {code, message, received}
 * `mismatch` says what differs from the expectation (null when ok). Exit
 * code 0 when ok, 1 otherwise, 2 on bad arguments.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { emit, toolArgs, ToolEnd } from './tool-args.js';

const { flag, get, num, required } = toolArgs('fetch-client', process.argv.slice(2), ['tls']);

const host = required('host');
const port = num('port');
const path = required('path');
const expectBytes = num('expect-bytes');
const expectSha = required('expect-sha256').toLowerCase();
const progressEvery = Math.max(1, num('progress-bytes', 1024 * 1024));
const timeoutMs = num('timeout-ms', 120_000);
const ca = get('ca');

const now = (): number => performance.timeOrigin + performance.now();
const started = now();
const hash = createHash('sha256');
let header: Buffer | undefined = Buffer.alloc(0) as Buffer;
let status: string | null = null;
let received = 0;
let nextProgress = progressEvery;
let lastArrival: number | undefined;
const gaps: Array<{ ms: number; at: number; offset: number }> = [];

const sock: net.Socket = flag('tls')
  ? tls.connect({ host, port, ...(ca !== undefined ? { ca: readFileSync(ca) } : { rejectUnauthorized: false }), checkServerIdentity: () => undefined })
  : net.connect({ host, port });

function finish(code: number): void {
  end.finish(code, sock);
}

function error(code: string, message: string): void {
  if (end.finished) return;
  emit('error', { code, message, received });
  finish(1);
}

const end = new ToolEnd(timeoutMs, () => error('ETIMEDOUT', `not done within ${timeoutMs} ms`));

function body(d: Buffer): void {
  hash.update(d);
  received += d.length;
  while (received >= nextProgress) {
    emit('progress', { received });
    nextProgress += progressEvery;
  }
}

sock.on(flag('tls') ? 'secureConnect' : 'connect', () => {
  const t = sock as tls.TLSSocket;
  emit('connected', { localPort: sock.localPort, protocol: flag('tls') ? t.getProtocol() : null, cipher: flag('tls') ? t.getCipher().name : null });
  sock.write(`GET ${path} HTTP/1.0\r\n\r\n`);
});

sock.on('data', (d: Buffer) => {
  const t = now();
  if (lastArrival !== undefined) {
    const g = { ms: t - lastArrival, at: lastArrival, offset: received };
    if (gaps.length < 5 || g.ms > gaps[gaps.length - 1]!.ms) {
      gaps.push(g);
      gaps.sort((a, b) => b.ms - a.ms);
      if (gaps.length > 5) gaps.pop();
    }
  }
  lastArrival = t;
  if (header === undefined) {
    body(d);
    return;
  }
  header = Buffer.concat([header, d]);
  const end = header.indexOf('\r\n\r\n');
  if (end < 0) {
    if (header.length > 64 * 1024) error('BAD_RESPONSE', 'no end of the response header in 64 KiB');
    return;
  }
  status = header.toString('latin1', 0, header.indexOf('\r\n'));
  const rest = header.subarray(end + 4);
  header = undefined;
  if (rest.length > 0) body(rest);
});

sock.on('end', () => {
  const sha256 = hash.digest('hex');
  const mismatch =
    status === null ? 'no response header' : !/^HTTP\/1\.[01] 200/.test(status) ? `status ${status}` : received !== expectBytes ? `${received} bytes, expected ${expectBytes}` : sha256 !== expectSha ? `sha256 ${sha256}, expected ${expectSha}` : null;
  emit('done', { status, received, sha256, ok: mismatch === null, mismatch, maxGapMs: gaps[0]?.ms ?? 0, gapAt: gaps[0]?.at ?? null, gaps, ms: now() - started });
  finish(mismatch === null ? 0 : 1);
});

sock.on('error', (e: NodeJS.ErrnoException) => error(e.code ?? 'EUNKNOWN', e.message));
sock.on('close', () => error('ECLOSED', `the connection closed after ${received} body bytes, without an end`));
