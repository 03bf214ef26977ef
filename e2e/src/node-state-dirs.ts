/**
 * An ftcp node keeps its private directory (the NSW agent's socket) at
 * `<tmp>/ftcp-<role>-XXXXXX`, with its pid in `owner.pid`, and removes it on
 * a clean exit. A node the test bed SIGKILLs cannot, and the next node of the
 * same role sweeps it only if there is a next one; so the bed removes the
 * directories of the processes it killed itself, whatever their log level.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pidAlive } from './netns.js';

/** The naming `packages/cli/src/runtime/state-dir.ts` uses. */
const NODE_DIR = /^ftcp-(primary|backup)-[A-Za-z0-9]{6}$/;
const OWNER_FILE = 'owner.pid';

/**
 * Removes the node directories under `parent` whose owner is one of `pids`
 * and no longer alive; returns the paths removed. Another run's directories,
 * and those of owners still running, are left alone.
 */
export function removeNodeStateDirs(pids: ReadonlySet<number>, parent = tmpdir()): string[] {
  if (pids.size === 0) return [];
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!NODE_DIR.test(name)) continue;
    const dir = join(parent, name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue;
    }
    if (!pids.has(owner) || pidAlive(owner)) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
