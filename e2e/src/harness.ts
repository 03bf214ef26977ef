/**
 * What every end-to-end failover run shares, whatever its server and
 * client: the seeded PRNG and the seed, reading the JSON log lines of ftcp
 * processes and tools, bounded waits on a process's output, the takeover's
 * timeline from the buffer's and the backup's logs, a summary of the
 * client-side capture (who spoke for the VIP, FIN and RST, the longest
 * silence), snapshots of the hosts' sockets while a client is stuck, and
 * the cleanup of what a SIGKILLed agent leaves behind. failover.ts (the echo
 * scenario) and scenario.ts (any server, any client) are built on it.
 */
import { TcpFlag, flagString, hasFlag, type PcapCapture } from './pcap.js';
import type { HostProcess } from './process.js';
import type { HostRole, Testbed } from './testbed.js';
import { FTCP_BIN } from './tool-paths.js';

/** How the backup follows the primary (issue 5, "Modes"). */
export type BackupMode = 'hot' | 'cold';

/** When the buffer and the backup said what (ms since the epoch), from their logs. */
export interface TakeoverTimes {
  /** The buffer's first `primary-failed` (about any node). */
  readonly bufferDetected?: number;
  /** Every `primary-failed` of the buffer, in order (a false one before the fault among them). */
  readonly bufferVerdicts?: readonly number[];
  /** The primary's `stepping-down`, if it stepped down (a false detection, or a partition). */
  readonly primarySteppedDown?: number;
  /** The primary's first `quiet` (it lost the buffer) and first `resumed` after it (the buffer was back, same epoch). */
  readonly primaryQuiet?: number;
  readonly primaryResumed?: number;
  readonly failureDetected?: number;
  readonly promoted?: number;
  readonly vipMoved?: number;
  readonly takeoverComplete?: number;
  /** The fields of the backup's `takeover-complete` event (epoch, connections, ms, ...). */
  readonly complete?: Record<string, unknown>;
}

/** Who sent segments from the VIP's port, by source MAC, as the client saw it. */
export interface Speaker {
  readonly mac: string;
  /** Which host owns that MAC, if any. */
  readonly host: HostRole | undefined;
  readonly segments: number;
  /** Capture times, ms since the epoch. */
  readonly first: number;
  readonly last: number;
}

/** A summary of the client-side capture of the service's port. */
export interface CaptureSummary {
  readonly packets: number;
  readonly fromServer: number;
  readonly toServer: number;
  /** Connections seen (by the client's port). */
  readonly connections: number;
  /** The client's first FIN (its own close) on any connection, ms since the epoch, or null. */
  readonly clientFinAt: number | null;
  /**
   * Times of every RST the server side sent on a connection before the
   * client's FIN on it (or at all, if the client never sent one there): a
   * client still using its socket would see it as an error.
   */
  readonly serverRsts: readonly number[];
  /**
   * RSTs after the client's own FIN on that connection: a server that
   * closes with bytes unread (iperf3 at the end of a test) sends one, and a
   * client that closed its socket never sees it. One that only shut down
   * its sending side would, and its own checks report the error.
   */
  readonly serverRstsAfterClientFin: readonly number[];
  /**
   * Times of every FIN the server side sent on a connection before the
   * client's own FIN on that connection (or at all, if the client never sent
   * one there).
   */
  readonly serverFinsBeforeClientFin: readonly number[];
  /** Every MAC that spoke for the VIP, in order of first segment. */
  readonly speakers: readonly Speaker[];
  /**
   * The segments from the VIP cut into runs of one sender each, in order. With
   * one speaker at a time (DESIGN invariant 4) no host has two runs: the
   * primary's run, then the backup's.
   */
  readonly speakerRuns: readonly Speaker[];
  /**
   * When some host speaks again after another host spoke (a third run or
   * later): every segment of the capture from 5 before the first such
   * segment on, up to 60 lines, in the format of {@link CaptureSummary.aroundCrash}.
   */
  readonly interleaved: readonly string[];
  /** Longest time between two data-bearing segments of the server side on the wire, ms, and when it began. */
  readonly wireGapMs: number;
  readonly wireGapAt: number | null;
  /** Server-side segments after the crash cut, and the first one's time. */
  readonly serverSegmentsAfterCrash: number;
  readonly firstServerSegmentAfterCrash: number | null;
  /** Client segments with a sequence number seen before (retransmissions), after the crash. */
  readonly clientRetransmitsAfterCrash: number;
  /**
   * The last 10 segments before the crash and the first 80 after it, one
   * line each: time from the crash, who sent it, flags, sequence and ack
   * numbers relative to each side's ISN, window as sent, payload length.
   */
  readonly aroundCrash: readonly string[];
}

/** What the hosts' sockets and the buffer looked like while the client was stuck. */
export interface StallSnapshot {
  /** When it was taken, ms since the epoch. */
  readonly at: number;
  /** The client's byte counts at its last progress event. */
  readonly sent: number;
  readonly received: number;
  /** Command output (or its error) by label: `ss client`, `ss primary`, `ss backup`, `nstat client`, `nstat primary`, `nstat backup`, `nfqueue primary`, `iptables primary`, `tcpdump client`, `status`. */
  readonly outputs: Readonly<Record<string, string>>;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed to use: `FTCP_E2E_SEED` if set, else a fresh random one. */
export function scenarioSeed(): number {
  const env = process.env['FTCP_E2E_SEED'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`FTCP_E2E_SEED must be an integer in [0, 2^32), got ${env}`);
    return n;
  }
  return Math.floor(Math.random() * 0x100000000) >>> 0;
}

const TAKEOVER_EVENTS = ['failure-detected', 'promoted', 'vip-moved', 'takeover-complete'] as const;

export interface LogEvent {
  readonly event: string;
  readonly time: number | undefined;
  readonly fields: Record<string, unknown>;
}

/** A JSON log line of an ftcp process (`{"t": ISO, "event": ...}`) or a tool's (`{"ev": ..., "t": ms}`). */
export function parseLogLine(line: string): LogEvent | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    const event = typeof v['event'] === 'string' ? v['event'] : typeof v['ev'] === 'string' ? v['ev'] : undefined;
    if (event === undefined) return undefined;
    const t = v['t'];
    const time = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : undefined;
    return { event, time: Number.isFinite(time) ? time : undefined, fields: v };
  } catch {
    return undefined;
  }
}

/** Every line of a process, stdout then stderr (each in order). */
export function allLines(p: HostProcess): string[] {
  return [...p.stdoutLines, ...p.stderrLines];
}

/**
 * Waits until a line on stdout or stderr passes `test`, the process exits,
 * or `timeoutMs` passes. Polls: the lines are kept by {@link HostProcess}.
 */
export async function waitForAnyLine(p: HostProcess, test: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = allLines(p).find(test);
    if (hit !== undefined) return hit;
    if (p.exitStatus !== undefined) {
      throw new Error(`${what}: \`${p.commandLine}\` on ${p.host} exited (${JSON.stringify(p.exitStatus)}) first`);
    }
    if (Date.now() >= until) throw new Error(`${what}: not seen within ${timeoutMs} ms from \`${p.commandLine}\` on ${p.host}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves with the exit status, or undefined after `ms`. */
export async function exitWithin(p: HostProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  const s = await Promise.race([p.exited, t]);
  clearTimeout(timer);
  return s;
}

export function takeoverTimes(buffer: HostProcess | undefined, primary: HostProcess | undefined, backup: HostProcess | undefined): TakeoverTimes {
  const out: { -readonly [K in keyof TakeoverTimes]: TakeoverTimes[K] } = {};
  for (const line of primary ? allLines(primary) : []) {
    const e = parseLogLine(line);
    if (e?.event === 'stepping-down' && out.primarySteppedDown === undefined) out.primarySteppedDown = e.time;
    if (e?.event === 'quiet' && out.primaryQuiet === undefined) out.primaryQuiet = e.time;
    if (e?.event === 'resumed' && out.primaryQuiet !== undefined && out.primaryResumed === undefined) out.primaryResumed = e.time;
  }
  const verdicts: number[] = [];
  for (const line of buffer ? allLines(buffer) : []) {
    const e = parseLogLine(line);
    if (e?.event === 'primary-failed' && e.time !== undefined) verdicts.push(e.time);
  }
  if (verdicts.length > 0) {
    out.bufferDetected = verdicts[0];
    out.bufferVerdicts = verdicts;
  }
  const key = { 'failure-detected': 'failureDetected', promoted: 'promoted', 'vip-moved': 'vipMoved', 'takeover-complete': 'takeoverComplete' } as const;
  for (const line of backup ? allLines(backup) : []) {
    const e = parseLogLine(line);
    if (e === undefined || !(TAKEOVER_EVENTS as readonly string[]).includes(e.event)) continue;
    const k = key[e.event as (typeof TAKEOVER_EVENTS)[number]];
    if (out[k] !== undefined) continue;
    out[k] = e.time;
    if (e.event === 'takeover-complete') out.complete = e.fields;
  }
  return out;
}

/**
 * Summarises a client-side capture of the service port: who spoke for the
 * VIP (by MAC) and when, FINs and RSTs of the server side against the
 * client's own close, the longest silence of the server on the wire, and
 * client retransmissions after the crash.
 */
export function summarizeCapture(pcap: PcapCapture, bed: Testbed, port: number, crashAt: number | undefined): CaptureSummary {
  const segs = pcap.segments.filter((s) => s.srcPort === port || s.dstPort === port);
  const fromServer = segs.filter((s) => s.src === bed.vip && s.srcPort === port);
  const toServer = segs.filter((s) => s.dst === bed.vip && s.dstPort === port);
  const ms = (time: number): number => time * 1000;
  const clientFin = toServer.find((s) => hasFlag(s, TcpFlag.FIN));
  const clientFinAt = clientFin ? ms(clientFin.time) : null;
  // Per connection (the client's port): its own first FIN, and each side's ISN.
  const clientFinOf = new Map<number, number>();
  for (const s of toServer) if (hasFlag(s, TcpFlag.FIN) && !clientFinOf.has(s.srcPort)) clientFinOf.set(s.srcPort, ms(s.time));
  const afterClientFin = (s: (typeof fromServer)[number]): boolean => {
    const fin = clientFinOf.get(s.dstPort);
    return fin !== undefined && ms(s.time) > fin;
  };
  const clientIsn = new Map<number, number>();
  const serverIsn = new Map<number, number>();
  for (const s of toServer) if (hasFlag(s, TcpFlag.SYN) && !clientIsn.has(s.srcPort)) clientIsn.set(s.srcPort, s.seq);
  for (const s of fromServer) if (hasFlag(s, TcpFlag.SYN) && !serverIsn.has(s.dstPort)) serverIsn.set(s.dstPort, s.seq);
  const clientPorts = new Set(toServer.map((s) => s.srcPort));
  const macOwner = new Map<string, HostRole>();
  for (const role of bed.hostRoles) macOwner.set(bed.host(role).lanMac, role);
  const speakers = new Map<string, { mac: string; host: HostRole | undefined; segments: number; first: number; last: number }>();
  const speakerRuns: Array<{ mac: string; host: HostRole | undefined; segments: number; first: number; last: number }> = [];
  let wireGapMs = 0;
  let wireGapAt: number | null = null;
  let prev: number | undefined;
  for (const s of fromServer) {
    const t = ms(s.time);
    const mac = s.srcMac ?? '?';
    const sp = speakers.get(mac) ?? { mac, host: macOwner.get(mac), segments: 0, first: t, last: t };
    sp.segments++;
    sp.last = t;
    speakers.set(mac, sp);
    const run = speakerRuns[speakerRuns.length - 1];
    if (run !== undefined && run.mac === mac) {
      run.segments++;
      run.last = t;
    } else {
      speakerRuns.push({ mac, host: sp.host, segments: 1, first: t, last: t });
    }
    if (s.payloadLength === 0) continue;
    if (prev !== undefined && t - prev > wireGapMs) {
      wireGapMs = t - prev;
      wireGapAt = prev;
    }
    prev = t;
  }
  const afterCrash = crashAt === undefined ? [] : fromServer.filter((s) => ms(s.time) >= crashAt);
  // A client data segment whose sequence number was seen before: a retransmission.
  let clientRetransmitsAfterCrash = 0;
  const seenSeq = new Set<number>();
  for (const s of toServer) {
    if (s.payloadLength === 0) continue;
    if (seenSeq.has(s.seq) && crashAt !== undefined && ms(s.time) >= crashAt) clientRetransmitsAfterCrash++;
    seenSeq.add(s.seq);
  }
  const rel = (v: number, isn: number | undefined): string => (isn === undefined ? String(v) : String((v - isn) >>> 0));
  const line = (s: (typeof segs)[number]): string => {
    const fromVip = s.src === bed.vip;
    const cport = fromVip ? s.dstPort : s.srcPort;
    const who = fromVip ? (macOwner.get(s.srcMac ?? '') ?? s.srcMac ?? '?') : 'client';
    const dt = crashAt === undefined ? `${s.time.toFixed(6)}` : `${(ms(s.time) - crashAt).toFixed(1)}ms`;
    const seq = rel(s.seq, (fromVip ? serverIsn : clientIsn).get(cport));
    const ack = rel(s.ack, (fromVip ? clientIsn : serverIsn).get(cport));
    const conn = clientPorts.size > 1 ? ` :${cport}` : '';
    return `${dt} ${who}${conn} [${flagString(s.flags)}] seq ${seq} ack ${ack} win ${s.window} len ${s.payloadLength}`;
  };
  let interleaved: string[] = [];
  const third = speakerRuns[2];
  if (third !== undefined) {
    const i = segs.findIndex((s) => ms(s.time) >= third.first);
    interleaved = segs.slice(Math.max(0, i - 5), Math.max(0, i - 5) + 60).map(line);
  }
  let aroundCrash: string[] = [];
  if (crashAt !== undefined) {
    const first = segs.findIndex((s) => ms(s.time) >= crashAt);
    const from = first < 0 ? Math.max(0, segs.length - 10) : Math.max(0, first - 10);
    aroundCrash = segs.slice(from, first < 0 ? segs.length : first + 80).map(line);
  }
  return {
    packets: pcap.packets,
    fromServer: fromServer.length,
    toServer: toServer.length,
    connections: clientPorts.size,
    clientFinAt,
    serverRsts: fromServer.filter((s) => hasFlag(s, TcpFlag.RST) && !afterClientFin(s)).map((s) => ms(s.time)),
    serverRstsAfterClientFin: fromServer.filter((s) => hasFlag(s, TcpFlag.RST) && afterClientFin(s)).map((s) => ms(s.time)),
    serverFinsBeforeClientFin: fromServer
      .filter((s) => {
        const fin = clientFinOf.get(s.dstPort);
        return hasFlag(s, TcpFlag.FIN) && (fin === undefined || ms(s.time) < fin);
      })
      .map((s) => ms(s.time)),
    speakers: [...speakers.values()],
    speakerRuns,
    interleaved,
    wireGapMs,
    wireGapAt,
    serverSegmentsAfterCrash: afterCrash.length,
    firstServerSegmentAfterCrash: afterCrash[0] ? ms(afterCrash[0].time) : null,
    clientRetransmitsAfterCrash,
    aroundCrash,
  };
}

/**
 * Watches the client's progress; whenever it has been still for `stallMs`
 * (at most three times), snapshots the sockets of every host that is not
 * crashed and the buffer's status. Progress is `progress()` when given (any
 * number that grows while the client gets on: bytes on disk, replies), else
 * the count of the client's stdout lines. `stop` ends the watch and waits
 * for a snapshot under way (each command is bounded by 5 s).
 */
export function watchStalls(
  bed: Testbed,
  client: HostProcess,
  endpoint: string | undefined,
  stallMs: number,
  out: StallSnapshot[],
  progress?: () => number,
): { stop(): Promise<void> } {
  let stopped = false;
  let lastCount = -1;
  let lastChange = Date.now();
  let snapped = false;
  const loop = (async () => {
    while (!stopped && out.length < 3) {
      await sleep(100);
      let count: number;
      try {
        count = progress ? progress() : client.stdoutLines.length;
      } catch {
        count = lastCount;
      }
      if (count !== lastCount) {
        lastCount = count;
        lastChange = Date.now();
        snapped = false;
        continue;
      }
      if (snapped || Date.now() - lastChange < stallMs || client.exitStatus !== undefined) continue;
      snapped = true;
      const last = [...client.events()].reverse().find((e) => e.ev === 'progress' || e.ev === 'connected');
      const outputs: Record<string, string> = {};
      const grab = async (label: string, role: HostRole, cmd: string, args: string[]): Promise<void> => {
        try {
          const r = await bed.exec(role, cmd, args, { timeoutMs: 5000 });
          outputs[label] = r.stdout;
        } catch (err) {
          outputs[label] = `(failed: ${(err as Error).message.slice(0, 500)})`;
        }
      };
      const jobs = (['client', 'primary', 'backup'] as const)
        .filter((role) => !bed.isCrashed(role))
        .map((role) => grab(`ss ${role}`, role, 'ss', ['-tinmo']));
      // Why a stalled peer drops what it is sent: checksum, PAWS and window drops are kernel counters.
      for (const role of ['client', 'primary', 'backup'] as const) if (!bed.isCrashed(role)) jobs.push(grab(`nstat ${role}`, role, 'nstat', ['-as']));
      if (!bed.isCrashed('primary')) {
        // What the wrap holds in the kernel's queue, and which of its rules counted what (a mute rule among them).
        jobs.push(grab('nfqueue primary', 'primary', 'cat', ['/proc/net/netfilter/nfnetlink_queue']));
        jobs.push(grab('iptables primary', 'primary', 'iptables-save', ['-c']));
      }
      // A few seconds of full segments at the client: checksums and timestamps of what the server sends.
      jobs.push(grab('tcpdump client', 'client', 'sh', ['-c', 'timeout 4 tcpdump -i lan0 -nn -vv -c 30 -s 0 tcp 2>&1; true']));
      if (endpoint !== undefined) jobs.push(grab('status', 'backup', FTCP_BIN, ['status', '--json', '--buffer', endpoint]));
      await Promise.all(jobs);
      out.push({ at: Date.now(), sent: Number(last?.['sent'] ?? 0), received: Number(last?.['received'] ?? (progress ? lastCount : 0)), outputs });
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

