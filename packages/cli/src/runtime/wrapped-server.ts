/**
 * The unmodified server under the NSW shim, as a primary and a backup start
 * it. Both must give it the same stream name: a replica's threads find the
 * primary's records by name, so the name cannot depend on the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { shimPath } from '@ftcp/nsw';

/** Name of the server's main stream on every node (its threads and children derive from it). */
export const SERVER_STREAM = 'server';

export interface WrappedServerOptions {
  mode: 'record' | 'playback';
  /** The NSW agent's unix socket. */
  socketPath: string;
  /** The service port: connections accepted from it are replicated. */
  port: number;
}

/**
 * Starts `command` under the shim; stdio is the caller's. It leads a process
 * group of its own (a new session), so that {@link signalServer} reaches the
 * children it starts too: a shell's background job, a forking server's
 * workers.
 */
export function spawnWrappedServer(command: readonly string[], opts: WrappedServerOptions): ChildProcess {
  const [cmd, ...args] = command;
  return spawn(cmd!, args, {
    stdio: 'inherit',
    detached: true,
    env: {
      ...process.env,
      LD_PRELOAD: shimPath(),
      FTCP_NSW_MODE: opts.mode,
      FTCP_NSW_SOCKET: opts.socketPath,
      FTCP_NSW_NAME: SERVER_STREAM,
      FTCP_NSW_PORT: String(opts.port),
    },
  });
}

/**
 * Sends `sig` to the server's process group: the server and every child it
 * started and did not move to a group of its own. False when the group is
 * empty.
 */
export function signalServer(server: ChildProcess | null, sig: NodeJS.Signals): boolean {
  const pid = server?.pid;
  if (pid === undefined) return false;
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    // ESRCH: nobody is left in it.
    return false;
  }
}

/**
 * Stops the server and its children: SIGTERM to its group, SIGKILL after
 * `graceMs`. Resolves once the server exited and its group is empty: the
 * children have what is left of the grace to exit after it, then SIGKILL.
 * A server that exited by itself may have left children: they are stopped
 * the same way.
 */
export async function stopServer(server: ChildProcess | null, graceMs = 5000): Promise<void> {
  if (!server || server.pid === undefined) return;
  const until = Date.now() + graceMs;
  const running = server.exitCode === null && server.signalCode === null;
  const gone = running ? new Promise((r) => server.once('exit', r)) : Promise.resolve();
  if (!signalServer(server, 'SIGTERM') && !running) return;
  const t = setTimeout(() => signalServer(server, 'SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
  for (let i = 0; i < 1000 && Date.now() < until && groupAlive(server.pid); i++) await new Promise((r) => setTimeout(r, 20));
  signalServer(server, 'SIGKILL');
}

/**
 * Whether a process that is not a zombie is left in group `pgid`. Zombies do
 * not count: an orphaned child is its reaper's to collect, and a slow reaper
 * (or this process as PID 1 of a container, which never reaps strangers)
 * would otherwise hold up the stop for the whole grace.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid && f[0] !== 'Z') return true;
  }
  return false;
}
