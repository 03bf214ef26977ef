/** Starting helper processes that announce themselves with a JSON ready line. */
import { spawn, type ChildProcess } from 'node:child_process';

/** Spawns `cmd` and resolves with its ready line's endpoint; rejects after 15 s. */
export function spawnReady(cmd: string, args: string[]): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')}: no ready line within 15 s`)), 15_000);
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(t);
        resolve({ child, endpoint: (JSON.parse(line) as { endpoint: string }).endpoint });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${cmd} exited ${code} before it was ready`));
    });
  });
}

/** Stops a child and waits for it. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}
