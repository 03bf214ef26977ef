/**
 * The sending loop the stream tools share: the bytes a client owes, at an
 * optional rate, in whole chunks, yielding so that reading never waits on
 * sending.
 */
import type { Socket } from 'node:net';

export interface PacedSend {
  readonly sock: Socket;
  /** Bytes to send in all. */
  readonly total: number;
  /** Largest write. */
  readonly chunk: number;
  /** Bits per second in Mbit/s; undefined: as fast as the socket takes them. */
  readonly rateMbit: number | undefined;
  /** Bytes written in a row before yielding to the event loop. */
  readonly burstBytes: number;
  /** Milliseconds since the send began. */
  elapsedMs(): number;
  /** Bytes sent so far. */
  sent(): number;
  /** The next `n` bytes; the caller counts them as sent. */
  take(n: number): Buffer;
  /** True once the tool has ended: nothing more is sent. */
  finished(): boolean;
  /** Everything was written. */
  allSent?(): void;
}

/**
 * The loop's one step, to call once connected: sends what the rate allows
 * now, then yields to a timer when it allows less than a chunk (writes stay
 * large and the loop never spins on a few bytes), to `drain` when the
 * socket's buffer is full, or to the event loop after a burst. One call
 * chain at a time.
 */
export function pacedSender(o: PacedSend): () => void {
  const pump = (): void => {
    if (o.finished()) return;
    let burst = 0;
    while (o.sent() < o.total) {
      const n = Math.min(o.chunk, o.total - o.sent());
      if (o.rateMbit !== undefined) {
        const allowed = Math.floor((o.elapsedMs() * o.rateMbit * 1e6) / 8 / 1000) - o.sent();
        if (allowed < n) {
          setTimeout(pump, 1);
          return;
        }
      }
      if (!o.sock.write(o.take(n))) {
        o.sock.once('drain', pump);
        return;
      }
      burst += n;
      if (burst >= o.burstBytes) {
        setImmediate(pump);
        return;
      }
    }
    o.allSent?.();
  };
  return pump;
}
