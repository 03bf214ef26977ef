/**
 * The writer's side of failure detection (DESIGN invariant 4): a node that
 * has heard nothing from the buffer for longer than the failure timeout can
 * get nothing acknowledged, and the buffer may already have declared it
 * failed and promoted a backup, so it must stop speaking.
 */
import type { StableBufferClient } from '@ftcp/stable-buffer';

/**
 * Calls `onLost` (once) when the buffer has been silent for more than
 * `failureTimeoutMs`. Pings when things go quiet rather than relying on the
 * buffer's probes, whose interval is the buffer's setting: any answer resets
 * the silence. Returns a function that stops watching.
 */
export function watchBuffer(client: StableBufferClient, failureTimeoutMs: number, onLost: (silentMs: number) => void): () => void {
  let lost = false;
  const timer = setInterval(() => {
    const silent = client.silentForMs();
    if (silent > failureTimeoutMs) {
      if (lost) return;
      lost = true;
      clearInterval(timer);
      onLost(silent);
    } else if (silent > failureTimeoutMs / 3) client.ping().catch(() => {});
  }, Math.max(1, Math.floor(failureTimeoutMs / 5)));
  return () => clearInterval(timer);
}
