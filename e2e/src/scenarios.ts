/**
 * The servers and clients of issue 5's end-to-end tests, as
 * {@link Scenario}s for {@link runScenario}:
 *
 * 1. {@link echoScenario}: native/echod.c and tools/echo-client.ts, both
 *    directions, sha256 of every byte.
 * 2. {@link httpScenario}: `python3 -m http.server` serving a generated file
 *    to `curl`; curl exits 0 and the download's sha256 matches.
 * 3. {@link redisScenario}: `redis-server` and tools/redis-incr-client.ts,
 *    20 000 pipelined `INCR` on one connection, every reply the one before
 *    plus one, `GET` 20 000 on that connection and on a new one.
 * 4. {@link tlsScenario}: `openssl s_server -WWW` with a throwaway
 *    self-signed certificate streaming a file over TLS to
 *    tools/fetch-client.ts, which checks its length and sha256.
 * 5. {@link iperfScenario}: `iperf3 -s -1` and `iperf3 -c -J` uploading; the
 *    client exits 0 and its JSON reports no error.
 *
 * Files are generated into the run's temporary directory from the run's
 * client seed (AES-128-CTR over zeros, fast and replayable), so a replayed
 * seed serves the same bytes.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseLogLine, sleep, waitForAnyLine } from './harness.js';
import type { HostProcess } from './process.js';
import type { ClientOutcome, CommandSpec, Scenario, ScenarioContext } from './scenario.js';
import { ECHOD_BIN, ECHO_CLIENT_TOOL, FETCH_CLIENT_TOOL, REDIS_INCR_CLIENT_TOOL } from './tool-paths.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

/** The python of the system (not a pyenv shim script, which would exec a second image under the shim). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** The last event of one of `kinds` a process printed, scanning from the end. */
function lastEvent(p: HostProcess, kinds: readonly string[]): Record<string, unknown> | undefined {
  const lines = p.stdoutLines;
  for (let i = lines.length - 1; i >= 0; i--) {
    const e = parseLogLine(lines[i]!);
    if (e !== undefined && kinds.includes(e.event)) return e.fields;
  }
  return undefined;
}

function eventOf(c: ClientOutcome, ev: string): Record<string, unknown> | undefined {
  return c.events.find((e) => e.ev === ev);
}

/** Problems common to every client: it must have exited 0 and printed no `error` event. */
function exitProblems(c: ClientOutcome, what: string): string[] {
  const out: string[] = [];
  if (c.exit === undefined) out.push(`${what} did not exit in time`);
  else if (c.exit.code !== 0) out.push(`${what} exited ${JSON.stringify(c.exit)}; stderr: ${c.stderr.slice(-5).join(' | ') || '(empty)'}`);
  const err = eventOf(c, 'error');
  if (err !== undefined) out.push(`${what} reported an error: ${String(err['code'])}: ${String(err['message'])}`);
  return out;
}

/**
 * Writes `bytes` bytes of AES-128-CTR keystream (key and IV from `seed`) to
 * `file` and returns their sha256.
 */
export function writeSeededFile(file: string, bytes: number, seed: number): string {
  const key = createHash('sha256').update(`ftcp-e2e-${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const zeros = Buffer.alloc(4 * MiB);
  const hash = createHash('sha256');
  const fd = openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(zeros.length, bytes - done);
      const chunk = cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
      hash.update(chunk);
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** The sha256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Polls a connect-and-answer probe from the client's host until it says yes; bounded. */
async function probeUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what}: not serving within ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------
// 1. echo

/** Options of {@link echoScenario}. */
export interface EchoScenarioOptions {
  /** Bytes each way; default 20 MiB. */
  readonly bytes?: number;
  /** The client's sending rate in Mbit/s, or null for unpaced; default 40. */
  readonly rateMbit?: number | null;
  /** The client's own time limit, ms; default 60 000. */
  readonly clientTimeoutMs?: number;
  /**
   * After the client, a second echo client of this many bytes on a new
   * connection (does the server still serve?); default none.
   */
  readonly followUpBytes?: number;
  /** A file for the client's arrival trace (`--trace`: CSV `t_ms,received`), for plots. */
  readonly trace?: string;
  /**
   * Serve with {@link SLOW_ACCEPT_ECHO} instead of echod: a server that
   * accepts the one connection only this long after it listens, so a fault
   * early in the client's run finds the connection established but never
   * accepted. The fault point is then a time: `acceptFaultWindowMs` after
   * the client started.
   */
  readonly acceptAfterMs?: number;
  readonly acceptFaultWindowMs?: readonly [number, number];
}

/**
 * `python3 -c SLOW_ACCEPT_ECHO HOST PORT DELAY_S`: listens, sleeps, accepts
 * one connection and echoes it to its end. One `time.sleep`, so a replica
 * makes the same calls in the same order whenever it runs.
 */
export const SLOW_ACCEPT_ECHO = [
  'import json, socket, sys, time',
  'host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])',
  's = socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
  's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
  's.bind((host, port))',
  's.listen(16)',
  'print(json.dumps({"ev": "listening", "port": port}), flush=True)',
  'time.sleep(delay)',
  'c, peer = s.accept()',
  'n = 0',
  'while True:',
  '    d = c.recv(65536)',
  '    if not d:',
  '        break',
  '    c.sendall(d)',
  '    n += len(d)',
  'c.close()',
  'print(json.dumps({"ev": "closed", "bytes": n}), flush=True)',
].join('\n');

/** Scenario 1: echod and the echo client; see the module comment. */
export function echoScenario(opts: EchoScenarioOptions = {}): Scenario {
  const bytes = opts.bytes ?? 20 * MiB;
  const rateMbit = opts.rateMbit === undefined ? 40 : opts.rateMbit;
  const clientTimeoutMs = opts.clientTimeoutMs ?? 60_000;
  const echoClient = (ctx: ScenarioContext, n: number, seed: number, rate: number | null, trace?: string): CommandSpec => ({
    cmd: process.execPath,
    args: [
      ECHO_CLIENT_TOOL, '--host', ctx.vip, '--port', String(ctx.port), '--bytes', String(n), '--seed', String(seed),
      '--timeout-ms', String(clientTimeoutMs), '--progress-bytes', String(256 * 1024),
      ...(rate !== null ? ['--rate-mbit', String(rate)] : []),
      ...(trace !== undefined ? ['--trace', trace] : []),
    ],
  });
  const checkEcho = (c: ClientOutcome, n: number, what: string): string[] => {
    const problems = exitProblems(c, what);
    const done = eventOf(c, 'done');
    if (done === undefined) return [...problems, `${what} never finished (no done event)`];
    if (done['sent'] !== n || done['received'] !== n) problems.push(`${what} sent ${String(done['sent'])} and got back ${String(done['received'])} of ${n} bytes`);
    if (done['mismatchAt'] !== null) problems.push(`${what}: the echo differs from what was sent at offset ${String(done['mismatchAt'])}`);
    if (done['sha256Sent'] !== done['sha256Received']) problems.push(`${what}: sha256 sent ${String(done['sha256Sent'])} != received ${String(done['sha256Received'])}`);
    if (done['ok'] !== true) problems.push(`${what}: done.ok is false`);
    return problems;
  };
  return {
    name: opts.acceptAfterMs === undefined ? 'echo' : 'slow-accept-echo',
    server: (ctx) =>
      opts.acceptAfterMs === undefined
        ? { cmd: ECHOD_BIN, args: [ctx.vip, String(ctx.port), '-v'] }
        : { cmd: SYSTEM_PYTHON, args: ['-c', SLOW_ACCEPT_ECHO, ctx.vip, String(ctx.port), String(opts.acceptAfterMs / 1000)] },
    ready: async (_ctx, server) => {
      await waitForAnyLine(server, (l) => l.includes('"listening"'), 10_000, 'echod listening');
    },
    client: (ctx) => echoClient(ctx, bytes, ctx.clientSeed, rateMbit, opts.trace),
    ...(opts.acceptAfterMs === undefined
      ? {
          progress: (client: HostProcess) => {
            const e = lastEvent(client, ['progress', 'closing', 'done']);
            return e === undefined ? undefined : Number(e['received']) / bytes;
          },
        }
      : { faultWindowMs: opts.acceptFaultWindowMs ?? [200, 600] }),
    clientTimeoutMs: clientTimeoutMs + 5000,
    ...(opts.followUpBytes !== undefined
      ? { followUp: (ctx: ScenarioContext) => echoClient(ctx, opts.followUpBytes!, (ctx.clientSeed ^ 0x5a5a5a5a) >>> 0, null) }
      : {}),
    check: ({ client, followUp }) => {
      const problems = checkEcho(client, bytes, 'the echo client');
      if (opts.followUpBytes !== undefined) {
        if (followUp === undefined) problems.push('the follow-up echo client never ran');
        else problems.push(...checkEcho(followUp, opts.followUpBytes, 'the follow-up echo client'));
      }
      const done = eventOf(client, 'done');
      return { problems, facts: done === undefined ? {} : { maxGapMs: done['maxGapMs'], gapAt: done['gapAt'], ms: done['ms'], lastByteAt: done['lastByteAt'] } };
    },
  };
}

// ---------------------------------------------------------------------------
// 2. python3 -m http.server and curl

/** Options of {@link httpScenario}. */
export interface HttpScenarioOptions {
  /** Size of the served file; default 200 MiB. */
  readonly bytes?: number;
  /** The client's download rate, Mbit/s (tbf on its link); default 400. */
  readonly rateMbit?: number;
  /**
   * `module`: `python3 -m http.server` as the issue says (a
   * ThreadingHTTPServer: one thread per request). `plain`: the same handler
   * under a single-threaded `http.server.HTTPServer` (`python3 -c`).
   * Default `module`.
   */
  readonly server?: 'module' | 'plain';
  /** `--protocol` of `python3 -m http.server` (HTTP/1.0 is its default). */
  readonly protocol?: string;
  /** curl's `--max-time` and the harness's limit, ms; default 30 000. */
  readonly clientTimeoutMs?: number;
}

/** A single-threaded http.server: SimpleHTTPRequestHandler under a plain HTTPServer. */
const PLAIN_HTTP_SERVER = [
  'import functools, http.server, sys',
  'addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]',
  'handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)',
  'srv = http.server.HTTPServer((addr, port), handler)',
  'print(f"Serving HTTP on {addr} port {port} (plain HTTPServer) ...", flush=True)',
  'srv.serve_forever()',
].join('\n');

/** Scenario 2: http.server serving a generated file to curl; see the module comment. */
export function httpScenario(opts: HttpScenarioOptions = {}): Scenario {
  const bytes = opts.bytes ?? 200 * MiB;
  const clientTimeoutMs = opts.clientTimeoutMs ?? 30_000;
  const kind = opts.server ?? 'module';
  let sha256 = '';
  const www = (ctx: ScenarioContext): string => join(ctx.dir, 'www');
  const download = (ctx: ScenarioContext): string => join(ctx.dir, 'download.bin');
  return {
    name: kind === 'module' ? 'http' : 'http-plain',
    prepare: (ctx) => {
      mkdirSync(www(ctx));
      sha256 = writeSeededFile(join(www(ctx), 'big.bin'), bytes, ctx.clientSeed);
    },
    server: (ctx) =>
      kind === 'module'
        ? {
            cmd: SYSTEM_PYTHON,
            args: ['-u', '-m', 'http.server', String(ctx.port), '--bind', ctx.vip, '--directory', www(ctx), ...(opts.protocol !== undefined ? ['--protocol', opts.protocol] : [])],
          }
        : { cmd: SYSTEM_PYTHON, args: ['-u', '-c', PLAIN_HTTP_SERVER, ctx.vip, String(ctx.port), www(ctx)] },
    ready: async (_ctx, server) => {
      await waitForAnyLine(server, (l) => l.includes('Serving HTTP on'), 15_000, 'http.server serving');
    },
    clientLink: { downMbit: opts.rateMbit ?? 400 },
    client: (ctx) => ({
      cmd: 'curl',
      args: [
        '--silent', '--show-error', '--fail', '--max-time', String(Math.ceil(clientTimeoutMs / 1000)), '--output', download(ctx),
        '--write-out', '%{http_code} %{size_download} %{time_total}\\n', `http://${ctx.vip}:${ctx.port}/big.bin`,
      ],
    }),
    progress: (_client, ctx) => (existsSync(download(ctx)) ? statSync(download(ctx)).size / bytes : undefined),
    faultWindow: [0.05, 0.25],
    clientTimeoutMs: clientTimeoutMs + 5000,
    check: async ({ client }, ctx) => {
      const problems = exitProblems(client, 'curl');
      const size = existsSync(download(ctx)) ? statSync(download(ctx)).size : null;
      const got = size === null ? null : await sha256File(download(ctx));
      if (size !== bytes) problems.push(`the download has ${String(size)} bytes, expected ${bytes}`);
      if (got !== sha256) problems.push(`the download's sha256 is ${String(got)}, expected ${sha256}`);
      return { problems, facts: { curl: client.stdout.join(' '), size, sha256: got, expected: sha256 } };
    },
  };
}

// ---------------------------------------------------------------------------
// 3. redis-server and pipelined INCR

/** Options of {@link redisScenario}. */
export interface RedisScenarioOptions {
  /** INCR commands; default 20 000. */
  readonly count?: number;
  /** Commands per second (pacing, so a crash lands mid-run); default 5000. */
  readonly rate?: number;
  /** Commands per batch (one write); default 100. */
  readonly batch?: number;
  /**
   * How to tell redis serves: `ping` (default) asks PING through the VIP
   * until PONG (an earlier, closed connection the backups must replay too);
   * `log` waits for redis's "Ready to accept connections" line instead.
   */
  readonly ready?: 'ping' | 'log';
  /** The client's time limit, ms; default 30 000. */
  readonly clientTimeoutMs?: number;
}

/** Scenario 3: redis-server and tools/redis-incr-client.ts; see the module comment. */
export function redisScenario(opts: RedisScenarioOptions = {}): Scenario {
  const count = opts.count ?? 20_000;
  const clientTimeoutMs = opts.clientTimeoutMs ?? 30_000;
  return {
    name: 'redis',
    server: (ctx) => ({
      cmd: 'redis-server',
      args: ['--port', String(ctx.port), '--bind', ctx.vip, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', opts.ready === 'log' ? 'notice' : 'warning'],
    }),
    ready: async (ctx, server) => {
      if (opts.ready === 'log') {
        await waitForAnyLine(server, (l) => l.includes('Ready to accept connections'), 15_000, 'redis ready');
        return;
      }
      await probeUntil('redis-server', 15_000, async () => {
        const r = await ctx.bed.exec('client', 'redis-cli', ['-h', ctx.vip, '-p', String(ctx.port), 'PING'], { timeoutMs: 3000 });
        return r.stdout.trim() === 'PONG';
      });
    },
    client: (ctx) => ({
      cmd: process.execPath,
      args: [
        REDIS_INCR_CLIENT_TOOL, '--host', ctx.vip, '--port', String(ctx.port), '--count', String(count), '--batch', String(opts.batch ?? 100),
        '--rate', String(opts.rate ?? 5000), '--progress-every', '200', '--timeout-ms', String(clientTimeoutMs),
      ],
    }),
    progress: (client) => {
      const e = lastEvent(client, ['progress', 'done']);
      return e === undefined ? undefined : Number(e['replies']) / count;
    },
    clientTimeoutMs: clientTimeoutMs + 5000,
    check: ({ client }) => {
      const problems = exitProblems(client, 'the redis client');
      const done = eventOf(client, 'done');
      if (done === undefined) return { problems: [...problems, 'the redis client never finished (no done event)'], facts: {} };
      if (done['replies'] !== count) problems.push(`${String(done['replies'])} replies to ${count} INCR`);
      if (done['badAt'] !== null) problems.push(`reply ${String(done['badAt'])} is ${String(done['badReply'])}, not the one before plus one (a command lost or run twice)`);
      if (done['first'] !== 1 || done['last'] !== count) problems.push(`replies ran from ${String(done['first'])} to ${String(done['last'])}, expected 1 to ${count}`);
      if (done['get'] !== String(count)) problems.push(`GET on the same connection returned ${JSON.stringify(done['get'])}, expected "${count}"`);
      if (done['getNew'] !== String(count)) problems.push(`GET on a new connection returned ${JSON.stringify(done['getNew'])}, expected "${count}"`);
      return { problems, facts: { replies: done['replies'], get: done['get'], getNew: done['getNew'], maxGapMs: done['maxGapMs'], ms: done['ms'] } };
    },
  };
}

// ---------------------------------------------------------------------------
// 4. openssl s_server over TLS

/** Options of {@link tlsScenario}. */
export interface TlsScenarioOptions {
  /** Size of the streamed file; default 50 MiB. */
  readonly bytes?: number;
  /** The client's download rate, Mbit/s (tbf on its link); default 200. */
  readonly rateMbit?: number;
  /** The client's time limit, ms; default 30 000. */
  readonly clientTimeoutMs?: number;
}

/** Scenario 4: `openssl s_server -WWW` over TLS to tools/fetch-client.ts; see the module comment. */
export function tlsScenario(opts: TlsScenarioOptions = {}): Scenario {
  const bytes = opts.bytes ?? 50 * MiB;
  const clientTimeoutMs = opts.clientTimeoutMs ?? 30_000;
  let sha256 = '';
  const www = (ctx: ScenarioContext): string => join(ctx.dir, 'www');
  return {
    name: 'tls',
    prepare: async (ctx) => {
      mkdirSync(www(ctx));
      // A throwaway self-signed certificate (P-256: quick to make).
      await execFileP(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=ftcp-e2e',
          '-keyout', join(ctx.dir, 'key.pem'), '-out', join(ctx.dir, 'cert.pem')],
        { timeout: 15_000 },
      );
      sha256 = writeSeededFile(join(www(ctx), 'stream.bin'), bytes, ctx.clientSeed);
    },
    server: (ctx) => ({
      cmd: 'openssl',
      args: ['s_server', '-accept', `${ctx.vip}:${ctx.port}`, '-cert', join(ctx.dir, 'cert.pem'), '-key', join(ctx.dir, 'key.pem'), '-WWW', '-http_server_binmode'],
      cwd: www(ctx),
    }),
    ready: async (_ctx, server) => {
      await waitForAnyLine(server, (l) => l.trim() === 'ACCEPT', 15_000, 's_server ACCEPT');
    },
    clientLink: { downMbit: opts.rateMbit ?? 200 },
    client: (ctx) => ({
      cmd: process.execPath,
      args: [
        FETCH_CLIENT_TOOL, '--host', ctx.vip, '--port', String(ctx.port), '--path', '/stream.bin', '--tls', '--ca', join(ctx.dir, 'cert.pem'),
        '--expect-bytes', String(bytes), '--expect-sha256', sha256, '--progress-bytes', String(512 * 1024), '--timeout-ms', String(clientTimeoutMs),
      ],
    }),
    progress: (client) => {
      const e = lastEvent(client, ['progress', 'done']);
      return e === undefined ? undefined : Number(e['received']) / bytes;
    },
    faultWindow: [0.1, 0.6],
    clientTimeoutMs: clientTimeoutMs + 5000,
    check: ({ client }) => {
      const problems = exitProblems(client, 'the TLS client');
      const done = eventOf(client, 'done');
      const connected = eventOf(client, 'connected');
      if (done === undefined) return { problems: [...problems, 'the TLS client never finished (no done event)'], facts: { connected } };
      if (done['ok'] !== true) problems.push(`the TLS stream is wrong: ${String(done['mismatch'])}`);
      return { problems, facts: { protocol: connected?.['protocol'], cipher: connected?.['cipher'], received: done['received'], maxGapMs: done['maxGapMs'], ms: done['ms'] } };
    },
  };
}

// ---------------------------------------------------------------------------
// 5. iperf3

/** Options of {@link iperfScenario}. */
export interface IperfScenarioOptions {
  /** Seconds of upload (`-t`); default 6. */
  readonly seconds?: number;
  /** Target bitrate (`-b`, e.g. `100M`), so the log stays small; default 100M. */
  readonly bitrate?: string;
}

/** The fields of iperf3's `-J` output the check reads. */
interface IperfJson {
  readonly error?: string;
  readonly end?: {
    readonly sum_sent?: { readonly bytes?: number; readonly retransmits?: number; readonly seconds?: number };
    readonly sum_received?: { readonly bytes?: number; readonly seconds?: number };
  };
}

/** Scenario 5: `iperf3 -s -1` and an uploading `iperf3 -c -J`; see the module comment. */
export function iperfScenario(opts: IperfScenarioOptions = {}): Scenario {
  const seconds = opts.seconds ?? 6;
  return {
    name: 'iperf3',
    server: (ctx) => ({ cmd: 'iperf3', args: ['-s', '-1', '-B', ctx.vip, '-p', String(ctx.port), '--forceflush'] }),
    // A probe connection would be the one-off test: wait for its banner instead.
    ready: async (_ctx, server) => {
      await waitForAnyLine(server, (l) => l.includes('Server listening on'), 15_000, 'iperf3 listening');
    },
    client: (ctx) => ({ cmd: 'iperf3', args: ['-c', ctx.vip, '-p', String(ctx.port), '-t', String(seconds), '-b', opts.bitrate ?? '100M', '-J', '--connect-timeout', '5000'] }),
    // iperf3 3.12 has no JSON stream: the fault point is a time.
    faultWindowMs: [1000, Math.max(1500, seconds * 1000 - 2000)],
    clientTimeoutMs: seconds * 1000 + 20_000,
    check: ({ client }) => {
      const problems = exitProblems(client, 'iperf3 -c');
      let json: IperfJson | undefined;
      try {
        json = JSON.parse(client.stdout.join('\n')) as IperfJson;
      } catch (err) {
        problems.push(`iperf3's output is not JSON: ${(err as Error).message}`);
      }
      if (json?.error !== undefined) problems.push(`iperf3 reports an error: ${json.error}`);
      const sent = json?.end?.sum_sent?.bytes;
      const received = json?.end?.sum_received?.bytes;
      if (json !== undefined && !(typeof sent === 'number' && sent > 0)) problems.push(`iperf3 sent ${String(sent)} bytes`);
      if (json !== undefined && !(typeof received === 'number' && received > 0)) problems.push(`iperf3's server received ${String(received)} bytes`);
      return { problems, facts: { sent, received, retransmits: json?.end?.sum_sent?.retransmits, seconds: json?.end?.sum_sent?.seconds } };
    },
  };
}

