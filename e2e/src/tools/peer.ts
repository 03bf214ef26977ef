#!/usr/bin/env node
/**
 * A small TCP peer for e2e tests, run inside a host's namespace with
 * `node peer.js serve|connect ...` (see peer-path.ts for its path). It reports
 * what happens as one JSON object per stdout line, `{"ev": ..., "t": ms since
 * the epoch, ...}`, so a test can wait for events and compare their times
 * with capture timestamps (same clock).
 *
 *   serve   --port P [--bind ADDR] [--mode echo|hold|sink|source] [--bytes N] [--greet NAME]
 *     echo: echo everything; hold: never read (unread data makes the kernel
 *     answer a close with RST); sink: count until EOF, report, close;
 *     source: send N bytes, then close. --greet writes `NAME\n` on accept.
 *     Events: listening, accept, sink {bytes, ms}, sourced {bytes}, sock-error.
 *
 *   connect --host H --port P [--mode interactive|download|upload|probe] ...
 *     interactive: stdin lines `send N`, `end`, `destroy`; events
 *       connected, data {n, total, text?}, end, error {code}, close.
 *     download: read to EOF; event done {bytes, ms} (first to last byte).
 *     upload --bytes N: send N bytes then EOF; event done {bytes, ms}.
 *     probe --expect NAME [--interval-ms 20] [--deadline-ms 2000]
 *       [--connect-timeout-ms 100]: connect again and again until the
 *       greeting is NAME; event probe {attempts, greeting} or probe-timeout.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';

type Args = Map<string, string>;

function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function fail(message: string): never {
  process.stderr.write(`peer: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv: readonly string[]): Args {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === undefined || !k.startsWith('--')) fail(`unexpected argument ${String(k)}`);
    const v = argv[i + 1];
    if (v === undefined) fail(`${k} needs a value`);
    m.set(k.slice(2), v);
    i++;
  }
  return m;
}

function num(args: Args, key: string, dflt?: number): number {
  const v = args.get(key);
  if (v === undefined) {
    if (dflt === undefined) fail(`--${key} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) fail(`--${key} must be a non-negative number, got ${v}`);
  return n;
}

function str(args: Args, key: string, dflt?: string): string {
  const v = args.get(key) ?? dflt;
  if (v === undefined) fail(`--${key} is required`);
  return v;
}

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Writes `total` bytes with backpressure, then calls `done`. */
function writeBytes(sock: net.Socket, total: number, done: () => void): void {
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        sock.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

function serve(args: Args): void {
  const mode = str(args, 'mode', 'echo');
  const greet = args.get('greet');
  const bytes = num(args, 'bytes', 0);
  if (!['echo', 'hold', 'sink', 'source'].includes(mode)) fail(`unknown serve mode ${mode}`);
  const server = net.createServer({ pauseOnConnect: mode === 'hold' }, (sock) => {
    emit('accept', { remote: sock.remoteAddress, remotePort: sock.remotePort });
    sock.on('error', (e: NodeJS.ErrnoException) => emit('sock-error', { code: e.code }));
    if (greet !== undefined) sock.write(`${greet}\n`);
    if (mode === 'echo') {
      sock.on('data', (d) => sock.write(d));
      sock.on('end', () => sock.end());
    } else if (mode === 'sink') {
      let total = 0;
      let first = 0;
      let last = 0;
      sock.on('data', (d) => {
        const now = performance.now();
        if (total === 0) first = now;
        last = now;
        total += d.length;
      });
      sock.on('end', () => {
        emit('sink', { bytes: total, ms: last - first });
        sock.end();
      });
    } else if (mode === 'source') {
      writeBytes(sock, bytes, () => {
        sock.end();
        emit('sourced', { bytes });
      });
      sock.resume();
    }
    // hold: paused from the start, never read.
  });
  server.on('error', (e) => fail(`listen: ${e.message}`));
  server.listen(num(args, 'port'), str(args, 'bind', '0.0.0.0'), () => emit('listening', { port: num(args, 'port') }));
}

function connectInteractive(host: string, port: number): void {
  const sock = net.connect({ host, port });
  let total = 0;
  sock.on('connect', () => emit('connected', { localPort: sock.localPort }));
  sock.on('data', (d) => {
    total += d.length;
    emit('data', { n: d.length, total, ...(d.length <= 256 ? { text: d.toString('latin1') } : {}) });
  });
  sock.on('end', () => emit('end'));
  sock.on('error', (e: NodeJS.ErrnoException) => emit('error', { code: e.code, message: e.message }));
  sock.on('close', () => {
    emit('close');
    process.exit(0);
  });
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'send') sock.write(Buffer.alloc(Number(arg ?? 0), 0x62));
    else if (cmd === 'end') sock.end();
    else if (cmd === 'destroy') sock.destroy();
  });
}

function connectDownload(host: string, port: number): void {
  const sock = net.connect({ host, port });
  let total = 0;
  let first = 0;
  let last = 0;
  sock.on('data', (d) => {
    const now = performance.now();
    if (total === 0) first = now;
    last = now;
    total += d.length;
  });
  sock.on('end', () => {
    emit('done', { bytes: total, ms: last - first });
    process.exit(0);
  });
  sock.on('error', (e) => fail(`download: ${e.message}`));
}

function connectUpload(host: string, port: number, bytes: number): void {
  const sock = net.connect({ host, port });
  let start = 0;
  sock.on('connect', () => {
    start = performance.now();
    writeBytes(sock, bytes, () => sock.end());
  });
  sock.resume();
  sock.on('close', () => {
    emit('done', { bytes, ms: performance.now() - start });
    process.exit(0);
  });
  sock.on('error', (e) => fail(`upload: ${e.message}`));
}

/** One attempt: the greeting line, or undefined on any failure within the timeout. */
function tryGreeting(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const done = (v: string | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    });
    sock.on('error', () => done(undefined));
    sock.on('close', () => done(undefined));
  });
}

async function connectProbe(host: string, port: number, args: Args): Promise<void> {
  const expect = str(args, 'expect');
  const interval = num(args, 'interval-ms', 20);
  const deadline = Date.now() + num(args, 'deadline-ms', 2000);
  const connectTimeout = num(args, 'connect-timeout-ms', 100);
  const seen: string[] = [];
  // Bounded by the deadline and by a count, whichever comes first.
  for (let attempts = 1; attempts <= 10_000; attempts++) {
    const g = await tryGreeting(host, port, connectTimeout);
    if (g === expect) {
      emit('probe', { attempts, greeting: g, seen });
      process.exit(0);
    }
    if (g !== undefined && seen.length < 20) seen.push(g);
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, interval));
  }
  emit('probe-timeout', { seen });
  process.exit(1);
}

function main(argv: readonly string[]): void {
  const [command, ...rest] = argv;
  const args = parseArgs(rest);
  if (command === 'serve') return serve(args);
  if (command !== 'connect') fail('usage: peer.js serve|connect --port P ...');
  const host = str(args, 'host');
  const port = num(args, 'port');
  const mode = str(args, 'mode', 'interactive');
  if (mode === 'interactive') return connectInteractive(host, port);
  if (mode === 'download') return connectDownload(host, port);
  if (mode === 'upload') return connectUpload(host, port, num(args, 'bytes'));
  if (mode === 'probe') {
    void connectProbe(host, port, args);
    return;
  }
  fail(`unknown connect mode ${mode}`);
}

main(process.argv.slice(2));
