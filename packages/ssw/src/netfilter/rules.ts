/**
 * The SSW's netfilter rules: chains of our own in the mangle table that send
 * the service's packets, and only those, to an NFQUEUE queue.
 *
 * - Incoming (client -> service) packets are queued in PREROUTING, before the
 *   kernel's TCP stack sees them; outgoing (service -> client) in OUTPUT,
 *   before they reach the wire.
 * - Packets carrying `skipMark` (ones the SSW injected itself) are not queued.
 * - Either every packet is queued (`all`: the clamp of acks to stable-seq
 *   needs each outgoing one), or (`control`, for the `hold` strategy, where
 *   the kernel never holds an unlogged client byte and so never acknowledges
 *   one) only the outgoing ones with SYN, FIN or RST, and of the client's
 *   pure ACKs at most {@link QUEUED_ACKS_PER_SECOND} per connection: the
 *   rest pass at the kernel's speed. {@link ServiceRules.mute} then drops
 *   outgoing packets in the kernel.
 * - Fail closed: the NFQUEUE rule has no --queue-bypass, so while no process
 *   listens on the queue the kernel drops the service's packets instead of
 *   passing them unwrapped (FT-TCP 3.3: no byte may be acknowledged unlogged).
 * - Installed in one `iptables-restore --noflush` transaction; removed on
 *   every exit path ({@link ServiceRules.removeSync} for process exit hooks);
 *   chains left by a dead process are found by the pid in their name and
 *   removed at the next start.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { ErrorCode, FtcpError } from '@ftcp/stable-buffer';

const run = promisify(execFile);

/** Prefix of every chain ftcp creates; the before-stop check greps for it. */
export const CHAIN_PREFIX = 'FTCP-';
const TABLE = 'mangle';

/** What to intercept. */
export interface ServiceRuleSpec {
  /** The service's virtual IPv4 address. */
  vip: string;
  port: number;
  /** NFQUEUE queue number (0..65535). */
  queueNum: number;
  /** Packets with this fwmark pass untouched (the SSW's own injections). */
  skipMark: number;
  /**
   * Command prefix that runs iptables where the rules belong, e.g.
   * ['ip', 'netns', 'exec', 'host1']; empty for this network namespace.
   */
  prefix?: string[];
  /** Owner pid written into chain names; defaults to this process. */
  ownerPid?: number;
  /** Which outgoing packets are queued: `all` (default) or only SYN, FIN and RST (`control`). */
  outgoing?: OutgoingQueueing;
}

/** Which outgoing packets of the service the rules queue. */
export type OutgoingQueueing = 'all' | 'control';

function chainNames(pid: number, queueNum: number): { inbound: string; outbound: string; acks: string } {
  const base = `${CHAIN_PREFIX}${pid}-${queueNum}`;
  return { inbound: `${base}-I`, outbound: `${base}-O`, acks: `${base}-A` };
}

const CHAIN_RE = /^:(FTCP-(\d+)-(\d+)-[IOA]) /;

/**
 * `control`: the client's pure ACKs queued per connection at most this
 * often (the recorder logs the client's ack, window and TSecr every 10 ms at
 * most); the rest pass, so a bulk download does not cost a verdict per ACK.
 */
export const QUEUED_ACKS_PER_SECOND = 100;

/**
 * One u32 test per TCP header length (data offset 5 to 15 words) that holds
 * when an IPv4 packet without options has a TCP header of that length and
 * nothing after it: no payload. u32 cannot subtract, hence one per length.
 */
function pureAckTests(): string[] {
  const tests: string[] = [];
  for (let words = 5; words <= 15; words++) tests.push(`0>>24=0x45&&0&0xFFFF=${20 + 4 * words}&&32>>28=${words}`);
  return tests;
}

function checkSpec(spec: ServiceRuleSpec): void {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(spec.vip) || spec.vip.split('.').some((o) => Number(o) > 255)) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `service address ${spec.vip} is not an IPv4 address`);
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new FtcpError(ErrorCode.BAD_CONFIG, `service port ${spec.port} is not 1..65535`);
  if (!Number.isInteger(spec.queueNum) || spec.queueNum < 0 || spec.queueNum > 65535) throw new FtcpError(ErrorCode.BAD_CONFIG, `queue ${spec.queueNum} is not 0..65535`);
  if (!Number.isInteger(spec.skipMark) || spec.skipMark <= 0 || spec.skipMark > 0xffffffff) throw new FtcpError(ErrorCode.BAD_CONFIG, `mark ${spec.skipMark} is not 1..2^32-1`);
  if (spec.outgoing !== undefined && spec.outgoing !== 'all' && spec.outgoing !== 'control') throw new FtcpError(ErrorCode.BAD_CONFIG, `outgoing queueing ${String(spec.outgoing)} is not all or control`);
}

/** The iptables-restore input that creates the chains and their jumps. */
export function renderRules(spec: ServiceRuleSpec): string {
  checkSpec(spec);
  const { inbound, outbound, acks } = chainNames(spec.ownerPid ?? process.pid, spec.queueNum);
  const mark = `0x${spec.skipMark.toString(16)}`;
  const q = `-j NFQUEUE --queue-num ${spec.queueNum}`;
  const client = `-d ${spec.vip}/32 -p tcp -m tcp --dport ${spec.port}`;
  // A packet no longer than a pure ACK can be, without SYN, FIN or RST, goes
  // (goto: a RETURN there passes it) to the chain that tells pure ACKs apart.
  const control = spec.outgoing === 'control';
  const ackChain = control
    ? [
        `-A ${inbound} ${client} -m mark ! --mark ${mark} -m length --length 40:80 --tcp-flags SYN,FIN,RST NONE -g ${acks}`,
        `-A ${acks} -m hashlimit --hashlimit-upto ${QUEUED_ACKS_PER_SECOND}/sec --hashlimit-burst 10 --hashlimit-mode srcip,srcport --hashlimit-name ftcp-q${spec.queueNum} ${q}`,
        ...pureAckTests().map((t) => `-A ${acks} -m u32 --u32 "${t}" -j RETURN`),
        `-A ${acks} ${q}`,
      ]
    : [];
  return [
    `*${TABLE}`,
    `:${inbound} - [0:0]`,
    `:${outbound} - [0:0]`,
    ...(control ? [`:${acks} - [0:0]`] : []),
    ...ackChain,
    `-A ${inbound} ${client} -m mark ! --mark ${mark} ${q}`,
    ...(control ? [`-A ${outbound} -s ${spec.vip}/32 -p tcp -m tcp --sport ${spec.port} --tcp-flags SYN,FIN,RST NONE -j RETURN`] : []),
    `-A ${outbound} -s ${spec.vip}/32 -p tcp -m tcp --sport ${spec.port} -m mark ! --mark ${mark} ${q}`,
    `-I PREROUTING 1 -j ${inbound}`,
    `-I OUTPUT 1 -j ${outbound}`,
    'COMMIT',
    '',
  ].join('\n');
}

async function exec(prefix: string[], cmd: string, args: string[], input?: string): Promise<string> {
  const argv = [...prefix, cmd, ...args];
  try {
    if (input !== undefined) {
      // execFile cannot feed stdin; the input is small, so the sync form is fine.
      return execFileSync(argv[0]!, argv.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    }
    return (await run(argv[0]!, argv.slice(1), { encoding: 'utf8' })).stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new FtcpError(ErrorCode.BAD_CONFIG, `${argv.join(' ')} failed: ${stderr.trim() || (err as Error).message}`, { cause: err });
  }
}

function removeCommands(chains: string[]): string[][] {
  const cmds: string[][] = [];
  for (const c of chains) {
    if (c.endsWith('-I')) cmds.push(['-t', TABLE, '-D', 'PREROUTING', '-j', c]);
    if (c.endsWith('-O')) cmds.push(['-t', TABLE, '-D', 'OUTPUT', '-j', c]);
  }
  // Every chain flushed before any is deleted: the inbound chain refers to the ACK chain.
  for (const c of chains) cmds.push(['-t', TABLE, '-F', c]);
  for (const c of chains) cmds.push(['-t', TABLE, '-X', c]);
  return cmds;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A reused pid that is not ftcp's: the chains are stale all the same.
  try {
    return /ftcp|node/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return false;
  }
}

/** Installed rules for one service; remove them exactly once. */
export class ServiceRules {
  private removed = false;
  /** Whether the mute rule is in the kernel, as the last finished command left it. */
  private muted = false;
  /** What the last call to mute asked for. */
  private muteWanted = false;
  /** The loop applying {@link muteWanted}, while one runs. */
  private muting: Promise<void> | null = null;

  private constructor(
    readonly spec: ServiceRuleSpec,
    readonly chains: string[],
  ) {}

  /** Installs the rules atomically. Removes stale chains of dead owners first. */
  static async install(spec: ServiceRuleSpec): Promise<ServiceRules> {
    const text = renderRules(spec);
    const prefix = spec.prefix ?? [];
    await removeStaleRules(prefix);
    await exec(prefix, 'iptables-restore', ['--noflush', '-w', '5'], text);
    const { inbound, outbound, acks } = chainNames(spec.ownerPid ?? process.pid, spec.queueNum);
    return new ServiceRules(spec, spec.outgoing === 'control' ? [inbound, outbound, acks] : [inbound, outbound]);
  }

  /**
   * Drops every outgoing packet of the service in the kernel (a rule at the
   * head of the outbound chain), or stops doing so. Only `control` rules
   * need it, as only they let packets leave without the queue: with `all`
   * it does nothing (the queue's listener drops them). Idempotent.
   *
   * The last call wins: a quiet shorter than one iptables run asks to unmute
   * while the mute is still being installed, and one loop, never two
   * commands at once, takes the kernel to whatever was asked last (a rule
   * left behind would silence a live primary for good).
   */
  mute(on: boolean): Promise<void> {
    if (this.spec.outgoing !== 'control') return Promise.resolve();
    this.muteWanted = on;
    this.muting ??= this.settleMute().finally(() => {
      this.muting = null;
    });
    return this.muting;
  }

  private async settleMute(): Promise<void> {
    while (!this.removed && this.muted !== this.muteWanted) {
      const on = this.muteWanted;
      await exec(this.spec.prefix ?? [], 'iptables', ['-w', '5', ...this.muteArgs(on)]);
      this.muted = on;
    }
  }

  /**
   * Mutes synchronously, for a step-down that must not return before it
   * holds. An unmute under way cannot undo it: the loop sees the new wish
   * and mutes again (two drop rules for a while are harmless).
   */
  muteSync(): void {
    if (this.removed || this.spec.outgoing !== 'control') return;
    this.muteWanted = true;
    if (this.muted && this.muting === null) return;
    const argv = [...(this.spec.prefix ?? []), 'iptables', '-w', '5', ...this.muteArgs(true)];
    execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    this.muted = true;
  }

  /** The service's own packets only: every packet this host sends passes the outbound chain (its ZeroMQ to the buffer too). */
  private muteArgs(on: boolean): string[] {
    const outbound = this.chains.find((c) => c.endsWith('-O'))!;
    const rule = ['-s', `${this.spec.vip}/32`, '-p', 'tcp', '-m', 'tcp', '--sport', String(this.spec.port), '-j', 'DROP'];
    return on ? ['-t', TABLE, '-I', outbound, '1', ...rule] : ['-t', TABLE, '-D', outbound, ...rule];
  }

  /** Removes the chains and their jumps; safe to call again. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    const prefix = this.spec.prefix ?? [];
    const errors: string[] = [];
    for (const args of removeCommands(this.chains)) {
      await exec(prefix, 'iptables', ['-w', '5', ...args]).catch((e: Error) => errors.push(e.message));
    }
    if (errors.length > 0) throw new FtcpError(ErrorCode.INTERNAL, `removing ftcp rules left errors: ${errors.join('; ')}`);
  }

  /** The same, synchronously, for `process.on('exit')` where nothing async runs. */
  removeSync(): void {
    if (this.removed) return;
    this.removed = true;
    const prefix = this.spec.prefix ?? [];
    for (const args of removeCommands(this.chains)) {
      const argv = [...prefix, 'iptables', '-w', '5', ...args];
      try {
        execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
      } catch {
        // Best effort at exit; the next start removes what is left.
      }
    }
  }
}

/** Lists ftcp chains in the namespace `prefix` runs in, with their owner pid. */
export async function listRules(prefix: string[] = []): Promise<{ chain: string; pid: number; queueNum: number }[]> {
  const saved = await exec(prefix, 'iptables-save', ['-t', TABLE]);
  const out: { chain: string; pid: number; queueNum: number }[] = [];
  for (const line of saved.split('\n')) {
    const m = CHAIN_RE.exec(line);
    if (m) out.push({ chain: m[1]!, pid: Number(m[2]), queueNum: Number(m[3]) });
  }
  return out;
}

/** Removes ftcp chains whose owning process is gone; returns their names. */
export async function removeStaleRules(prefix: string[] = []): Promise<string[]> {
  const stale = (await listRules(prefix)).filter((r) => r.pid !== process.pid && !processAlive(r.pid)).map((r) => r.chain);
  for (const args of removeCommands(stale)) {
    // A jump may already be gone (a half-finished removal): keep going.
    await exec(prefix, 'iptables', ['-w', '5', ...args]).catch(() => {});
  }
  return stale;
}
