/**
 * A node's private directory (the NSW agent's socket lives there). A node
 * killed fail-stop cannot remove its own, so each directory names its
 * owner's pid and every node sweeps the directories of dead owners when it
 * makes its own.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processAlive } from '@ftcp/stable-buffer';

const PREFIX = 'ftcp-';
const OWNER_FILE = 'owner.pid';

/**
 * Removes `<parent>/ftcp-<role>-*` directories whose owner is dead. A
 * directory without an owner file is left alone: it may be one being made
 * this instant, or another program's.
 */
export function sweepStateDirs(role: string, parent = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(`${PREFIX}${role}-`)) continue;
    const dir = join(parent, name);
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** Sweeps dead owners' directories, then makes this process's own. */
export function makeStateDir(role: string, parent = tmpdir()): string {
  sweepStateDirs(role, parent);
  const dir = mkdtempSync(join(parent, `${PREFIX}${role}-`));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  return dir;
}
