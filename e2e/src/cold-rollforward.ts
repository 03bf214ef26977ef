/**
 * A cold roll-forward longer than the client's own patience (FT-TCP 2.3.1;
 * DESIGN.md "Failover, in order", step 6): {@link uploadDigestScenario} is a
 * {@link Scenario} for {@link runScenario} whose client gives up quickly when
 * nobody answers, and whose log is large, so that a cold backup's takeover
 * outlasts the client's retransmission timeout and only the wrap's
 * zero-window ACKs keep the connection alive.
 *
 * - The server, {@link DIGEST_SINK_SERVER}: reads one connection to its end,
 *   then writes `<bytes> <sha256>` and closes. Its log is the client's bytes
 *   (a few hundred read calls), so the roll-forward scales with the upload.
 * - The client, tools/upload-client.ts: uploads a seeded stream, always with
 *   unacknowledged data in flight, and checks the server's digest.
 * - The client's host runs with `net.ipv4.tcp_retries2 = N` (per network
 *   namespace), so its TCP gives up after {@link retries2TimeoutMs} of
 *   unanswered retransmissions instead of Linux's ~15 minutes. Not
 *   TCP_USER_TIMEOUT: by the kernel's source (tcp_rtx_probe0_timed_out,
 *   tcp_probe_timer; not measured here) a user timeout expires even while
 *   zero-window ACKs arrive, so no wrap could keep such a client waiting.
 *   The give-up time depends on the client's state at the crash: one
 *   probing a zero window (a server slower than its client) gives up after
 *   `tcp_retries2` unanswered probes, sooner than one retransmitting; the
 *   test paces the upload below the server's speed to be in the latter.
 * - A second capture in the client's host keeps only the VIP's zero-window
 *   segments ({@link ZeroWindowSegment}); the checker stops it and puts
 *   them in the verdict's facts (`zeroWindowSegments`).
 * - `dropZeroWindowAcks` (a negative control): an iptables rule in the
 *   client's host drops every zero-window segment from the VIP before its
 *   TCP sees it (the capture still does): the client must then time out.
 */
import { fileURLToPath } from 'node:url';
import type { Capture } from './capture.js';
import { parseLogLine, waitForAnyLine } from './harness.js';
import type { HostProcess } from './process.js';
import type { ClientOutcome, Scenario, ScenarioContext } from './scenario.js';
import type { HostRole } from './testbed.js';

/** Seeded upload checked by the server's sha256 (see tools/upload-client.ts). */
export const UPLOAD_CLIENT_TOOL: string = fileURLToPath(new URL('./tools/upload-client.js', import.meta.url));

/** The python of the system (as scenarios.ts's SYSTEM_PYTHON). */
const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * `python3 -c DIGEST_SINK_SERVER HOST PORT WORK`: accepts connections one
 * at a time, reads each to its end (256 KiB reads), then sends `<bytes>
 * <sha256 hex>\n` and closes it. WORK more sha256 passes over every read
 * stand for a server that computes on what it receives (about 0.75 ms per
 * MiB each here): a cold replica redoes all of it during its roll-forward,
 * while the log it fetches first stays the size of the upload. Plain
 * blocking calls, one thread, no syscall in the work: a replica makes the
 * same calls in the same order.
 */
export const DIGEST_SINK_SERVER = [
  'import hashlib, json, socket, sys',
  'host, port, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])',
  's = socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
  's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
  's.bind((host, port))',
  's.listen(16)',
  'print(json.dumps({"ev": "listening", "port": port}), flush=True)',
  'while True:',
  '    c, peer = s.accept()',
  '    h = hashlib.sha256()',
  '    n = 0',
  '    while True:',
  '        d = c.recv(262144)',
  '        if not d:',
  '            break',
  '        h.update(d)',
  '        for _ in range(work):',
  '            hashlib.sha256(d).digest()',
  '        n += len(d)',
  '    c.sendall(f"{n} {h.hexdigest()}\\n".encode())',
  '    c.close()',
].join('\n');

/** Linux's TCP_RTO_MIN, ms: the unit of tcp_retries2's time model and the least RTO. */
export const TCP_RTO_MIN_MS = 200;

/**
 * How long Linux lets data go unacknowledged under `tcp_retries2 = n`,
 * counted from the first retransmission (`retransmits_timed_out` with
 * `tcp_model_timeout`: `((2 << n) - 1) * TCP_RTO_MIN` for n up to 9):
 * 600 ms for 1, 1400 ms for 2, 3000 ms for 3.
 */
export function retries2TimeoutMs(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new RangeError(`tcp_retries2 of 1-9 only, got ${n}`);
  return ((2 << n) - 1) * TCP_RTO_MIN_MS;
}

/**
 * The earliest a silent peer makes such a client give up, from its last
 * answered transmission: the first RTO (at least TCP_RTO_MIN), then the
 * kernel checks the timeout only when the doubled retransmission timer
 * fires, so at the first expiry at or after {@link retries2TimeoutMs}:
 * 1400 ms for 1, 3000 ms for 2, 6200 ms for 3. (A real RTO is the minimum
 * plus the smoothed RTT, so the client dies a few ms later than this.)
 */
export function retries2GiveUpMs(n: number): number {
  const model = retries2TimeoutMs(n);
  let rto = TCP_RTO_MIN_MS;
  let sinceFirst = 0;
  while (sinceFirst < model) {
    rto *= 2;
    sinceFirst += rto;
  }
  return TCP_RTO_MIN_MS + sinceFirst;
}

/** A segment from the VIP with a zero window, seen in the client's host. */
export interface ZeroWindowSegment {
  /** Capture time, ms since the epoch. */
  readonly t: number;
  /** Who sent it, by its source MAC (undefined: a MAC of no host). */
  readonly host: HostRole | undefined;
  readonly seq: number;
  readonly ack: number;
  readonly payload: number;
}

/** Options of {@link uploadDigestScenario}. */
export interface UploadDigestOptions {
  /** Bytes to upload. */
  readonly bytes: number;
  /** The client's sending rate in Mbit/s, or null for as fast as TCP takes it; default null. */
  readonly rateMbit?: number | null;
  /** Extra sha256 passes the server makes over every read (see {@link DIGEST_SINK_SERVER}); default 0. */
  readonly serverWorkPasses?: number;
  /** `net.ipv4.tcp_retries2` of the client's host (1-9); default 2. */
  readonly clientTcpRetries2?: number;
  /** The client's own time limit, ms; default 40 000. */
  readonly clientTimeoutMs?: number;
  /** Drop the VIP's zero-window segments in the client's host before its TCP sees them (a negative control); default false. */
  readonly dropZeroWindowAcks?: boolean;
}

function eventOf(c: ClientOutcome, ev: string): Record<string, unknown> | undefined {
  return c.events.find((e) => e.ev === ev);
}

/** The client's progress: bytes it wrote, as a fraction of the upload. */
function sentFraction(p: HostProcess, bytes: number): number | undefined {
  const lines = p.stdoutLines;
  for (let i = lines.length - 1; i >= 0; i--) {
    const e = parseLogLine(lines[i]!);
    if (e !== undefined && ['progress', 'closing', 'done'].includes(e.event)) return Number(e.fields['sent']) / bytes;
  }
  return undefined;
}

/** The upload to {@link DIGEST_SINK_SERVER}; see the module comment. */
export function uploadDigestScenario(opts: UploadDigestOptions): Scenario {
  const bytes = opts.bytes;
  const rateMbit = opts.rateMbit ?? null;
  const retries2 = opts.clientTcpRetries2 ?? 2;
  const work = opts.serverWorkPasses ?? 0;
  retries2TimeoutMs(retries2);
  const clientTimeoutMs = opts.clientTimeoutMs ?? 40_000;
  let zeroWindowCapture: Capture | undefined;
  // Zero-window segments from the VIP's service port: the window field (TCP offset 14) is 0.
  const zeroWindowFilter = (ctx: ScenarioContext): string => `src host ${ctx.vip} and tcp src port ${ctx.port} and tcp[14:2] = 0`;
  return {
    name: 'upload-digest',
    prepare: async (ctx) => {
      const { bed } = ctx;
      await bed.exec('client', 'sysctl', ['-q', '-w', `net.ipv4.tcp_retries2=${retries2}`]);
      if (opts.dropZeroWindowAcks === true) {
        // u32: from the IP header length (IHL) to the TCP header, then its 32-bit word at 12 (flags, window): window 0.
        await bed.exec('client', 'iptables', [
          '-w', '-I', 'INPUT', '-p', 'tcp', '-s', ctx.vip, '--sport', String(ctx.port), '-m', 'u32', '--u32', '0>>22&0x3C@12&0xFFFF=0', '-j', 'DROP',
        ]);
      }
      zeroWindowCapture = await bed.capture('client', { filter: zeroWindowFilter(ctx), snaplen: 96 });
    },
    server: (ctx) => ({ cmd: SYSTEM_PYTHON, args: ['-c', DIGEST_SINK_SERVER, ctx.vip, String(ctx.port), String(work)] }),
    ready: async (_ctx, server) => {
      await waitForAnyLine(server, (l) => l.includes('"listening"'), 10_000, 'digest server listening');
    },
    client: (ctx) => ({
      cmd: process.execPath,
      args: [
        UPLOAD_CLIENT_TOOL, '--host', ctx.vip, '--port', String(ctx.port), '--bytes', String(bytes), '--seed', String(ctx.clientSeed),
        '--timeout-ms', String(clientTimeoutMs), '--progress-bytes', String(1024 * 1024),
        ...(rateMbit !== null ? ['--rate-mbit', String(rateMbit)] : []),
      ],
    }),
    progress: (client) => sentFraction(client, bytes),
    clientTimeoutMs: clientTimeoutMs + 5000,
    check: async ({ client }, ctx) => {
      const problems: string[] = [];
      if (client.exit === undefined) problems.push('the upload client did not exit in time');
      else if (client.exit.code !== 0) problems.push(`the upload client exited ${JSON.stringify(client.exit)}; stderr: ${client.stderr.slice(-5).join(' | ') || '(empty)'}`);
      const err = eventOf(client, 'error');
      if (err !== undefined) problems.push(`the upload client reported an error: ${String(err['code'])}: ${String(err['message'])} (after writing ${String(err['sent'])} bytes)`);
      const done = eventOf(client, 'done');
      if (done === undefined) problems.push('the upload client never finished (no done event)');
      else {
        if (done['sent'] !== bytes || done['serverBytes'] !== bytes) problems.push(`the client sent ${String(done['sent'])} and the server read ${String(done['serverBytes'])} of ${bytes} bytes`);
        if (done['serverSha256'] !== done['sha256Sent']) problems.push(`sha256 sent ${String(done['sha256Sent'])} != read by the server ${String(done['serverSha256'])}`);
        if (done['ok'] !== true) problems.push('done.ok is false');
      }
      const owner = new Map<string, HostRole>(ctx.bed.hostRoles.map((r) => [ctx.bed.host(r).lanMac, r]));
      const pcap = zeroWindowCapture === undefined ? undefined : await zeroWindowCapture.stop(100);
      const zeroWindowSegments: ZeroWindowSegment[] = (pcap?.segments ?? [])
        .filter((s) => s.src === ctx.vip && s.srcPort === ctx.port && s.window === 0)
        .map((s) => ({ t: s.time * 1000, host: s.srcMac === undefined ? undefined : owner.get(s.srcMac), seq: s.seq, ack: s.ack, payload: s.payloadLength }));
      return {
        problems,
        facts: { clientTcpRetries2: retries2, dropZeroWindowAcks: opts.dropZeroWindowAcks === true, done: done ?? null, error: err ?? null, zeroWindowSegments },
      };
    },
  };
}

