/**
 * The writer's side of failure detection (DESIGN invariant 4): a node that
 * has heard nothing from the buffer for longer than the failure timeout can
 * get nothing acknowledged, and the buffer may already have declared it
 * failed and promoted a backup, so it must stop speaking.
 */
import type { StableBufferClient } from '@ftcp/stable-buffer';

/** What the watch reads of the buffer client. */
export type WatchedClient = Pick<StableBufferClient, 'silentForMs' | 'ping'>;

/**
 * Calls `onLost` (once) when the buffer has been silent for more than
 * `failureTimeoutMs`. Pings when things go quiet rather than relying on the
 * buffer's probes, whose interval is the buffer's setting: any answer resets
 * the silence.
 *
 * A tick that comes late means this process stalled, and the buffer's
 * answers may be waiting unread in the socket: such a tick decides nothing,
 * it pings, and the next one (after the socket was read) decides. The buffer
 * does the same (its Detector), so a loaded host costs a pause, not a
 * failover. Returns a function that stops watching.
 */
export function watchBuffer(client: WatchedClient, failureTimeoutMs: number, onLost: (silentMs: number) => void, now: () => number = () => performance.now()): () => void {
  const periodMs = Math.max(1, Math.floor(failureTimeoutMs / 5));
  const stallMs = periodMs + Math.max(5, failureTimeoutMs / 2);
  let lost = false;
  let lastTick = now();
  const tick = (): void => {
    const t = now();
    const stalled = t - lastTick > stallMs;
    lastTick = t;
    const silent = client.silentForMs();
    if (silent > failureTimeoutMs && !stalled) {
      if (lost) return;
      lost = true;
      clearInterval(timer);
      onLost(silent);
    } else if (silent > failureTimeoutMs / 3) client.ping().catch(() => {});
  };
  const timer = setInterval(tick, periodMs);
  return () => clearInterval(timer);
}
