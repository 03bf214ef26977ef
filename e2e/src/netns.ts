/**
 * Low-level network namespace operations over iproute2: make, list, delete,
 * run a command inside, and find and kill every process inside. Higher up,
 * testbed.ts builds hosts from these.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestbedError, TestbedErrorCode } from './errors.js';
import { run, runSync, type RunOptions, type RunResult } from './run.js';

/** Creates the named namespace (`ip netns add`). */
export async function nsCreate(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
}

/** Names of every namespace `ip netns list` shows. */
export async function nsList(): Promise<string[]> {
  return parseNsList((await run('ip', ['netns', 'list'])).stdout);
}

/** {@link nsList}, synchronously. */
export function nsListSync(): string[] {
  return parseNsList(runSync('ip', ['netns', 'list']).stdout);
}

function parseNsList(text: string): string[] {
  // Lines read `name` or `name (id: 3)`.
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/** Pids of every process whose network namespace is `ns` (`ip netns pids`); [] if `ns` is gone. */
export async function nsPids(ns: string): Promise<number[]> {
  try {
    return parsePids((await run('ip', ['netns', 'pids', ns])).stdout);
  } catch (err) {
    if (!(await nsList()).includes(ns)) return [];
    throw err;
  }
}

/** {@link nsPids}, synchronously. */
export function nsPidsSync(ns: string): number[] {
  try {
    return parsePids(runSync('ip', ['netns', 'pids', ns]).stdout);
  } catch (err) {
    if (!nsListSync().includes(ns)) return [];
    throw err;
  }
}

function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((t) => /^\d+$/.test(t))
    .map(Number);
}

/** Sends `signal` to `pid`; a process that is already gone is not an error. */
export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Whether a process with this pid is alive. A zombie counts as dead: it runs
 * nothing and holds no namespace, and its reaping is up to its parent (here
 * often PID 1, which may reap late).
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM means it exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Options of {@link nsKillAll}. */
export interface KillAllOptions {
  /** Give up after this many milliseconds; default 3000. */
  readonly timeoutMs?: number;
}

/**
 * SIGKILLs every process in `ns`, again and again until `ip netns pids` shows
 * none: a process may fork between one listing and the kill. Bounded by
 * `timeoutMs` (and at most 50 rounds).
 *
 * @returns every pid that was sent SIGKILL.
 * @throws TestbedError `FTCP_E2E_TIMEOUT` if processes remain after the limit.
 */
export async function nsKillAll(ns: string, opts: KillAllOptions = {}): Promise<number[]> {
  const deadline = Date.now() + (opts.timeoutMs ?? 3000);
  const killed = new Set<number>();
  for (let round = 0; round < 50; round++) {
    const pids = await nsPids(ns);
    if (pids.length === 0) return [...killed];
    for (const pid of pids) if (signalPid(pid, 'SIGKILL')) killed.add(pid);
    if (Date.now() > deadline) break;
    await sleep(Math.min(5 * (round + 1), 50));
  }
  const left = await nsPids(ns);
  if (left.length === 0) return [...killed];
  throw new TestbedError(TestbedErrorCode.TIMEOUT, `processes ${left.join(', ')} still in namespace ${ns} after SIGKILL`);
}

/** {@link nsKillAll}, synchronously (busy-waits between rounds; for exit hooks only). */
export function nsKillAllSync(ns: string, opts: KillAllOptions = {}): number[] {
  const deadline = Date.now() + (opts.timeoutMs ?? 3000);
  const killed = new Set<number>();
  for (let round = 0; round < 50; round++) {
    const pids = nsPidsSync(ns);
    if (pids.length === 0) break;
    for (const pid of pids) if (signalPid(pid, 'SIGKILL')) killed.add(pid);
    if (Date.now() > deadline) break;
    // Atomics.wait sleeps synchronously without spinning the CPU.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  return [...killed];
}

/**
 * Kills everything in `ns`, then deletes it. Killing first matters: a
 * namespace with processes left in it outlives `ip netns del`, invisible but
 * with its devices and addresses still alive. Deleting a namespace that is
 * already gone is not an error.
 */
export async function nsDelete(ns: string, opts: KillAllOptions = {}): Promise<void> {
  await nsKillAll(ns, opts);
  try {
    await run('ip', ['netns', 'del', ns]);
  } catch (err) {
    if ((await nsList()).includes(ns)) throw err;
  }
}

/** {@link nsDelete}, synchronously (for exit hooks). Never throws. */
export function nsDeleteSync(ns: string): void {
  try {
    nsKillAllSync(ns);
    runSync('ip', ['netns', 'del', ns]);
  } catch {
    // An exit hook has nobody to report to; cleanupStale() gets it next run.
  }
}

/** Runs `cmd args` inside `ns` (`ip netns exec`) to completion; see {@link run}. */
export function nsExec(ns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

/** Runs `ip -n ns ARGS` (iproute2 acting inside `ns`); see {@link run}. */
export function ipIn(ns: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['-n', ns, ...args], opts);
}

/** Sets sysctls inside `ns`, e.g. `{ 'net.ipv4.ip_nonlocal_bind': 1 }`. */
export async function nsSysctl(ns: string, values: Readonly<Record<string, string | number>>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  if (args.length > 0) await nsExec(ns, 'sysctl', ['-q', '-w', ...args]);
}

/** One interface as `ip -j link show` reports it (the fields the test bed reads). */
export interface LinkInfo {
  readonly ifname: string;
  readonly address?: string;
  readonly operstate?: string;
  readonly flags?: readonly string[];
}

/** Every interface in `ns`, `lo` included. */
export async function nsLinks(ns: string): Promise<LinkInfo[]> {
  return JSON.parse((await ipIn(ns, ['-j', 'link', 'show'])).stdout) as LinkInfo[];
}
