#!/usr/bin/env node
/**
 * A redis client for issue 5's e2e scenario 3: one connection sends COUNT
 * pipelined `INCR KEY` commands and checks every reply, then asks `GET KEY`
 * on the same connection and on a new one. A command lost across a failover
 * shows as a reply that skips a number, a command run twice as a reply that
 * repeats one, and either as a final count that is not COUNT.
 *
 *   redis-incr-client --host H --port P [--count N] [--key K] [--batch B]
 *                     [--rate R] [--window W] [--progress-every E] [--timeout-ms T]
 *
 * Commands go out in batches of B (default 100), each batch in one write,
 * with at most W batches (default 4) unanswered, paced to R commands per
 * second when `--rate` is given (so a crash can land mid-run). Replies are
 * parsed as RESP as they come; each must be an integer reply equal to the
 * one before plus one, starting at 1 (the key must not exist before).
 *
 * JSON events on stdout, one per line, each with `t` (ms since the epoch):
 *   connected {localPort}
 *   progress  {sent, replies, last}         every E replies (default 500)
 *   done      {sent, replies, first, last, badAt, badReply, get, getNew,
 *              ok, maxGapMs, gapAt, gaps, ms}
 *   error     {code, message, sent, replies}
 * `badAt` is the index of the first reply that is not the one before plus
 * one (null if none) and `badReply` that reply as received; `get` and
 * `getNew` are the values `GET` returned on this connection and on a new one
 * (strings, or null for a nil reply); `maxGapMs` the longest time between
 * two reads that carried replies. Exit code 0 when ok, 1 otherwise, 2 on bad
 * arguments.
 */
import net from 'node:net';
import { emit, toolArgs, ToolEnd } from './tool-args.js';

const args = toolArgs('redis-incr-client', process.argv.slice(2));
const { num } = args;

const host = args.required('host');
const port = num('port');
const count = num('count', 20_000);
const key = args.get('key') ?? 'counter';
const batch = Math.max(1, num('batch', 100));
const rate = args.has('rate') ? num('rate') : undefined;
const windowBatches = Math.max(1, num('window', 4));
const progressEvery = Math.max(1, num('progress-every', 500));
const timeoutMs = num('timeout-ms', 60_000);

/** One RESP command as bytes. */
function command(...parts: string[]): Buffer {
  return Buffer.from(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
}

type Reply = { type: 'int'; value: number } | { type: 'bulk'; value: string | null } | { type: 'status'; value: string } | { type: 'error'; value: string } | { type: 'other'; value: string };

/**
 * Incremental RESP reader: feed it bytes, take whole replies. Knows the
 * reply types these commands get (integer, bulk, simple string, error);
 * arrays are reported as `other`.
 */
class RespReader {
  private buf: Buffer = Buffer.alloc(0);

  feed(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
  }

  /** The next whole reply, or undefined until more bytes come. */
  next(): Reply | undefined {
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) return undefined;
    const head = this.buf.toString('latin1', 1, eol);
    const kind = this.buf[0];
    if (kind === 0x3a /* : */) {
      this.buf = this.buf.subarray(eol + 2);
      return { type: 'int', value: Number(head) };
    }
    if (kind === 0x2b /* + */ || kind === 0x2d /* - */) {
      this.buf = this.buf.subarray(eol + 2);
      return { type: kind === 0x2b ? 'status' : 'error', value: head };
    }
    if (kind === 0x24 /* $ */) {
      const len = Number(head);
      if (len < 0) {
        this.buf = this.buf.subarray(eol + 2);
        return { type: 'bulk', value: null };
      }
      if (this.buf.length < eol + 2 + len + 2) return undefined;
      const value = this.buf.toString('utf8', eol + 2, eol + 2 + len);
      this.buf = this.buf.subarray(eol + 2 + len + 2);
      return { type: 'bulk', value };
    }
    const line = this.buf.toString('latin1', 0, eol);
    this.buf = this.buf.subarray(eol + 2);
    return { type: 'other', value: line };
  }
}

const started = performance.timeOrigin + performance.now();
let sent = 0;
let replies = 0;
let first: number | null = null;
let last: number | null = null;
let badAt: number | null = null;
let badReply: string | null = null;
let get: string | null | undefined;
let nextProgress = progressEvery;
let lastArrival: number | undefined;
const gaps: Array<{ ms: number; at: number; offset: number }> = [];

function finish(code: number): void {
  end.finish(code, sock);
}

function error(code: string, message: string): void {
  if (end.finished) return;
  emit('error', { code, message, sent, replies });
  finish(1);
}

const end = new ToolEnd(timeoutMs, () => error('ETIMEDOUT', `not done within ${timeoutMs} ms`));
const incr = command('INCR', key);
const sock = net.connect({ host, port });
sock.setNoDelay(true);
const reader = new RespReader();
let phase: 'incr' | 'get' | 'checking' = 'incr';

/** Sends what the window and the rate allow. */
function pump(): void {
  if (end.finished || phase !== 'incr') return;
  while (sent < count && sent - replies < windowBatches * batch) {
    const n = Math.min(batch, count - sent);
    if (rate !== undefined) {
      const allowed = Math.floor(((performance.timeOrigin + performance.now() - started) * rate) / 1000) - sent;
      if (allowed < n) {
        setTimeout(pump, 2);
        return;
      }
    }
    sock.write(Buffer.concat(Array.from({ length: n }, () => incr)));
    sent += n;
  }
}

function onReply(r: Reply): void {
  if (phase === 'checking') {
    error('BAD_REPLY', `an unexpected reply after GET: ${r.type} ${JSON.stringify(r.value)}`);
    return;
  }
  if (phase === 'get') {
    get = r.type === 'bulk' ? r.value : `${r.type}:${String(r.value)}`;
    phase = 'checking';
    void getOnNewConnection();
    return;
  }
  if (r.type !== 'int') {
    error('BAD_REPLY', `reply ${replies + 1} to INCR is ${r.type} ${JSON.stringify(r.value)}`);
    return;
  }
  const expect = last === null ? 1 : last + 1;
  if (badAt === null && r.value !== expect) {
    badAt = replies;
    badReply = String(r.value);
  }
  first ??= r.value;
  last = r.value;
  replies++;
  if (replies >= nextProgress) {
    emit('progress', { sent, replies, last });
    nextProgress += progressEvery;
  }
  if (replies === count) {
    phase = 'get';
    sock.write(command('GET', key));
  }
}

sock.on('connect', () => {
  emit('connected', { localPort: sock.localPort });
  pump();
});

sock.on('data', (d: Buffer) => {
  const t = performance.timeOrigin + performance.now();
  if (lastArrival !== undefined) {
    const g = { ms: t - lastArrival, at: lastArrival, offset: replies };
    if (gaps.length < 5 || g.ms > gaps[gaps.length - 1]!.ms) {
      gaps.push(g);
      gaps.sort((a, b) => b.ms - a.ms);
      if (gaps.length > 5) gaps.pop();
    }
  }
  lastArrival = t;
  reader.feed(d);
  for (let r = reader.next(); r !== undefined && !end.finished; r = reader.next()) onReply(r);
  pump();
});

/** `GET` on a second connection, then the verdict. */
async function getOnNewConnection(): Promise<void> {
  let getNew: string | null | undefined;
  try {
    getNew = await new Promise<string | null>((resolve, reject) => {
      const s2 = net.connect({ host, port });
      const r2 = new RespReader();
      s2.on('connect', () => s2.write(command('GET', key)));
      s2.on('data', (d: Buffer) => {
        r2.feed(d);
        const r = r2.next();
        if (r === undefined) return;
        s2.end();
        resolve(r.type === 'bulk' ? r.value : `${r.type}:${String(r.value)}`);
      });
      s2.on('error', reject);
      s2.on('close', () => reject(new Error('the second connection closed before GET was answered')));
    });
  } catch (e) {
    error((e as NodeJS.ErrnoException).code ?? 'EGET', `GET on a new connection: ${(e as Error).message}`);
    return;
  }
  const ok = badAt === null && replies === count && first === 1 && last === count && get === String(count) && getNew === String(count);
  emit('done', {
    sent,
    replies,
    first,
    last,
    badAt,
    badReply,
    get,
    getNew,
    ok,
    maxGapMs: gaps[0]?.ms ?? 0,
    gapAt: gaps[0]?.at ?? null,
    gaps,
    ms: performance.timeOrigin + performance.now() - started,
  });
  sock.end();
  finish(ok ? 0 : 1);
}

sock.on('error', (e: NodeJS.ErrnoException) => error(e.code ?? 'EUNKNOWN', e.message));
sock.on('close', () => error('ECLOSED', `the connection closed after ${replies} of ${count} replies`));
