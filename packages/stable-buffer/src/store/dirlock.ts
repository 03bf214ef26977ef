/**
 * One buffer per data directory: two would both hand out epochs and LSNs. A
 * lock file holds the owner's pid; a lock whose owner is gone (a SIGKILLed
 * buffer) is taken over, a live owner's is refused with a clear error.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, FtcpError } from '../errors.js';

const LOCK = 'buffer.lock';

/** Whether a process with this pid exists (EPERM: it does, owned by another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the directory's lock for this process; returns the function that releases it. */
export function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new FtcpError(ErrorCode.STORE, `cannot lock ${dir}: ${(err as Error).message}`, { cause: err });
      }
    }
    let owner = Number.NaN;
    try {
      owner = Number(readFileSync(path, 'utf8').trim());
    } catch {
      continue; // released between our attempts: try again
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
      throw new FtcpError(ErrorCode.DATA_DIR_IN_USE, `data directory ${dir} is in use by process ${owner} (another buffer); stop it or choose another --data-dir`);
    }
    // The owner is gone (or the file is garbage): take the lock over.
    try {
      unlinkSync(path);
    } catch {
      // Someone else took it over first; the next attempt sees their pid.
    }
  }
  throw new FtcpError(ErrorCode.DATA_DIR_IN_USE, `could not lock data directory ${dir}: it keeps changing hands`);
}
