/**
 * Serialises sends on one ZeroMQ socket: zeromq.js allows one send in flight
 * per socket, while replies become ready in any order (acks wait for commits).
 */
import type { Dealer, Router } from 'zeromq';

export class SendQueue {
  private readonly queue: (Buffer | Buffer[])[] = [];
  private draining = false;
  private closed = false;
  /** Sends that failed (peer gone under ROUTER_MANDATORY, socket closed). */
  failures = 0;

  constructor(private readonly socket: Router | Dealer) {}

  /** Queues a message; returns at once. */
  push(msg: Buffer | Buffer[]): void {
    if (this.closed) return;
    this.queue.push(msg);
    if (!this.draining) void this.drain();
  }

  get length(): number {
    return this.queue.length;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const msg = this.queue.shift()!;
        try {
          await this.socket.send(msg);
        } catch {
          // A peer that vanished (EHOSTUNREACH) costs us nothing: its requests
          // are resent when it reconnects, and its state is in the store.
          this.failures++;
        }
      }
    } finally {
      this.draining = false;
    }
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
  }
}
