/**
 * Shared helpers for the NSW tests: source-tree paths (tests run from dist/)
 * and compiling the C programs under test/c with the machine's gcc.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NswAgent, type Divergence } from '../src/agent.js';
import { MemoryRecordSink } from '../src/sink.js';

/** packages/nsw, found from dist/test/helpers.js. */
export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const goldenDir = join(packageDir, 'test/golden');
export const cDir = join(packageDir, 'test/c');
export const nativeDir = join(packageDir, 'native');

/** A fresh temporary directory and a function that removes it. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `ftcp-nsw-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Compiles test/c/<name>.c into dir with the shim's warnings; returns the binary's path. */
export function compileC(name: string, dir: string, extra: string[] = []): string {
  const out = join(dir, name);
  execFileSync('gcc', ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-O1', `-I${nativeDir}`, '-o', out, join(cDir, `${name}.c`), ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return out;
}


/** What a finished process did. */
export interface RunResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to completion without blocking the event loop (the agent
 * under test serves its shim from this same process).
 */
export function run(file: string, args: string[], env: Record<string, string | undefined>, timeoutMs = 15000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid ?? -1, code, signal, stdout, stderr });
    });
  });
}

/** Environment that loads the shim in a mode, talking to the agent at socketPath. */
export function shimEnv(shim: string, mode: string | undefined, socketPath: string, name = 'srv'): Record<string, string | undefined> {
  return { LD_PRELOAD: shim, FTCP_NSW_MODE: mode, FTCP_NSW_SOCKET: socketPath, FTCP_NSW_NAME: name };
}

/**
 * Waits until the agent has been idle (no shim connected, nothing unstable)
 * for 100 ms: a shim's last connections may be accepted after it exited.
 */
export async function quiet(agent: NswAgent): Promise<void> {
  let calm = 0;
  await until(() => {
    calm = agent.counters.open === 0 && agent.counters.unstable === 0 ? calm + 1 : 0;
    return calm >= 20;
  });
}

/** Waits until cond holds (the agent handles a shim's last records after the shim exits). */
export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

/** Resolves after ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A record agent and a playback agent sharing one in-memory log, as most shim tests use them. */
export interface AgentPair {
  sink: MemoryRecordSink;
  primary: NswAgent;
  replica: NswAgent;
  /** Divergences the replica reported, in order. */
  divergences: Divergence[];
  close(): Promise<void>;
}

/** Starts an {@link AgentPair} with its sockets in `dir`. */
export async function agentPair(dir: string): Promise<AgentPair> {
  const sink = new MemoryRecordSink();
  const primary = new NswAgent({ socketPath: join(dir, 'primary.sock'), mode: 'record', sink });
  const replica = new NswAgent({ socketPath: join(dir, 'replica.sock'), mode: 'playback', source: sink });
  const divergences: Divergence[] = [];
  replica.on('divergence', (d: Divergence) => divergences.push(d));
  await primary.listen();
  await replica.listen();
  return {
    sink,
    primary,
    replica,
    divergences,
    async close() {
      await primary.close();
      await replica.close();
    },
  };
}
