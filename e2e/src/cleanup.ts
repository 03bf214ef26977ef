/**
 * Cleanup that survives failures: live test beds are registered here and torn
 * down synchronously when the process exits or is interrupted, and
 * {@link cleanupStale} removes what a process that was killed outright (no
 * exit hook ran) left behind.
 */
import { nsDelete, nsList, pidAlive } from './netns.js';
import { parseNsName } from './names.js';

/** Something that can tear itself down without waiting on the event loop. */
export interface SyncDestroyable {
  /** Kills its processes and deletes its namespaces; must not throw. */
  destroySync(): void;
}

const live = new Set<SyncDestroyable>();
let hooked = false;

function destroyAllSync(): void {
  for (const bed of [...live]) {
    live.delete(bed);
    try {
      bed.destroySync();
    } catch {
      // Nobody to report to at exit; cleanupStale() catches it next run.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  destroyAllSync();
  // If someone else (mocha) handles this signal too, let them decide how to
  // exit; otherwise keep the default meaning of the signal.
  if (process.listenerCount(signal) <= 1) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
}

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', destroyAllSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Registers a live test bed so process exit, SIGINT and SIGTERM destroy it. */
export function registerLive(bed: SyncDestroyable): void {
  installHooks();
  live.add(bed);
}

/** Forgets a test bed that destroyed itself. */
export function unregisterLive(bed: SyncDestroyable): void {
  live.delete(bed);
}

/** How many test beds are registered and not yet destroyed. */
export function liveCount(): number {
  return live.size;
}

/**
 * Removes namespaces left by earlier runs that died without cleaning up:
 * those named by the test bed (`ftcp-<pid>-<hex>-<role>`) whose owning pid is
 * no longer alive. Namespaces of live processes, this one included, and any
 * other `ftcp-` namespace are left alone. Processes still inside a stale
 * namespace are SIGKILLed first.
 *
 * @returns the names removed.
 */
export async function cleanupStale(): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await nsList()) {
    const parsed = parseNsName(ns);
    if (!parsed || parsed.pid === process.pid || pidAlive(parsed.pid)) continue;
    await nsDelete(ns);
    removed.push(ns);
  }
  return removed;
}
