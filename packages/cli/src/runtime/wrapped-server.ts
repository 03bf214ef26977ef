/**
 * The unmodified server under the NSW shim, as a primary and a backup start
 * it. Both must give it the same stream name: a replica's threads find the
 * primary's records by name, so the name cannot depend on the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
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

/** Starts `command` under the shim; stdio is the caller's. */
export function spawnWrappedServer(command: readonly string[], opts: WrappedServerOptions): ChildProcess {
  const [cmd, ...args] = command;
  return spawn(cmd!, args, {
    stdio: 'inherit',
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

/** Stops the server if it still runs: SIGTERM, then SIGKILL after `graceMs`. Resolves once it exited. */
export async function stopServer(server: ChildProcess | null, graceMs = 5000): Promise<void> {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const gone = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const t = setTimeout(() => server.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
}
