/**
 * The epoch and its owner, in a small file of their own that is written
 * atomically and fsynced (file and directory) whatever the log's durability:
 * a promotion must survive power loss even when records need not (invariant 4).
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FtcpError } from '../errors.js';

export interface EpochState {
  epoch: number;
  owner: string;
}

const FILE = 'epoch.json';

/** Reads the epoch file of `dir`; epoch 0 and no owner when there is none. */
export function readEpoch(dir: string): EpochState {
  let text: string;
  try {
    text = readFileSync(join(dir, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { epoch: 0, owner: '' };
    throw new FtcpError(ErrorCode.STORE, `cannot read ${join(dir, FILE)}: ${(err as Error).message}`, { cause: err });
  }
  let v: Partial<EpochState>;
  try {
    v = JSON.parse(text) as Partial<EpochState>;
  } catch {
    v = {};
  }
  if (typeof v.epoch !== 'number' || !Number.isSafeInteger(v.epoch) || v.epoch < 0 || typeof v.owner !== 'string') {
    throw new FtcpError(ErrorCode.STORE, `${join(dir, FILE)} is corrupt: ${text.slice(0, 100)}`);
  }
  return { epoch: v.epoch, owner: v.owner };
}

/** Replaces the epoch file durably: write a temp file, fsync it, rename, fsync the directory. */
export function writeEpoch(dir: string, state: EpochState): void {
  const tmp = join(dir, `${FILE}.tmp`);
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, JSON.stringify(state) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, FILE));
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
