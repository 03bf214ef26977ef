/**
 * The SSW's netfilter rules: chains of our own in the mangle table that send
 * the service's packets, and only those, to an NFQUEUE queue.
 *
 * - Incoming (client -> service) packets are queued in PREROUTING, before the
 *   kernel's TCP stack sees them; outgoing (service -> client) in OUTPUT,
 *   before they reach the wire.
 * - Packets carrying `skipMark` (ones the SSW injected itself) are not queued.
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
}

function chainNames(pid: number, queueNum: number): { inbound: string; outbound: string } {
  return { inbound: `${CHAIN_PREFIX}${pid}-${queueNum}-I`, outbound: `${CHAIN_PREFIX}${pid}-${queueNum}-O` };
}

const CHAIN_RE = /^:(FTCP-(\d+)-(\d+)-[IO]) /;

function checkSpec(spec: ServiceRuleSpec): void {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(spec.vip) || spec.vip.split('.').some((o) => Number(o) > 255)) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `service address ${spec.vip} is not an IPv4 address`);
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new FtcpError(ErrorCode.BAD_CONFIG, `service port ${spec.port} is not 1..65535`);
  if (!Number.isInteger(spec.queueNum) || spec.queueNum < 0 || spec.queueNum > 65535) throw new FtcpError(ErrorCode.BAD_CONFIG, `queue ${spec.queueNum} is not 0..65535`);
  if (!Number.isInteger(spec.skipMark) || spec.skipMark <= 0 || spec.skipMark > 0xffffffff) throw new FtcpError(ErrorCode.BAD_CONFIG, `mark ${spec.skipMark} is not 1..2^32-1`);
}

/** The iptables-restore input that creates both chains and their jumps. */
export function renderRules(spec: ServiceRuleSpec): string {
  checkSpec(spec);
  const { inbound, outbound } = chainNames(spec.ownerPid ?? process.pid, spec.queueNum);
  const mark = `0x${spec.skipMark.toString(16)}`;
  const q = `-j NFQUEUE --queue-num ${spec.queueNum}`;
  return [
    `*${TABLE}`,
    `:${inbound} - [0:0]`,
    `:${outbound} - [0:0]`,
    `-A ${inbound} -d ${spec.vip}/32 -p tcp -m tcp --dport ${spec.port} -m mark ! --mark ${mark} ${q}`,
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
    cmds.push(['-t', TABLE, '-D', c.endsWith('-I') ? 'PREROUTING' : 'OUTPUT', '-j', c]);
  }
  for (const c of chains) cmds.push(['-t', TABLE, '-F', c], ['-t', TABLE, '-X', c]);
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
    const { inbound, outbound } = chainNames(spec.ownerPid ?? process.pid, spec.queueNum);
    return new ServiceRules(spec, [inbound, outbound]);
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
