/**
 * The primary's order of lock operations, enforced on a replica (FT-TCP 3.8:
 * "the primary's order of lock acquisitions"). Each LOCK record holds its
 * positions in a domain (see {@link LockPosition}); a replica's operation at
 * position p may run only once every lower position of its domain was
 * performed. Positions are performed out of order (threads and processes
 * run concurrently), so each domain keeps the contiguous prefix done and
 * the positions done above it.
 */
import { ErrorCode, FtcpError } from './errors.js';

interface Domain {
  /** Every position up to this one was performed (or skipped as lost). */
  done: number;
  /** Positions performed above `done`. */
  ahead: Set<number>;
  /** Waiters by position: each resolves once every position below it is done. */
  waiters: Map<number, () => void>;
  /** When a position of the domain was last performed (ms, monotonic clock of `now`). */
  progressAt: number;
}

/** A domain's state for status output and the gap check. */
export interface LockDomainState {
  domain: bigint;
  /** Highest position such that it and every position below it were performed. */
  done: number;
  /** Lowest position a replica waits to perform, or null. */
  lowestWaiting: number | null;
  /** ms since a position of the domain was last performed. */
  idleMs: number;
}

/** Per-domain progress of a replica's lock operations. */
export class LockOrder {
  private readonly domains = new Map<bigint, Domain>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  private domain(id: bigint): Domain {
    let d = this.domains.get(id);
    if (!d) this.domains.set(id, (d = { done: 0, ahead: new Set(), waiters: new Map(), progressAt: this.now() }));
    return d;
  }

  /**
   * Resolves once every position of `domain` below `position` was performed;
   * rejects with {@link ErrorCode.CLOSED} when `signal` aborts first. Two
   * waiters for one position are a broken record (positions are unique).
   */
  due(domain: bigint, position: number, signal?: AbortSignal): Promise<void> {
    const d = this.domain(domain);
    if (position <= d.done + 1) return Promise.resolve();
    if (d.waiters.has(position)) return Promise.reject(new FtcpError(ErrorCode.CONFLICT, `two lock operations at position ${position}`));
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new FtcpError(ErrorCode.CLOSED, 'lock wait aborted'));
        return;
      }
      const onAbort = (): void => {
        d.waiters.delete(position);
        reject(new FtcpError(ErrorCode.CLOSED, 'lock wait aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      d.waiters.set(position, () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  /** Position `position` of `domain` was performed: waiters it was the last one missing for go on. */
  performed(domain: bigint, position: number): void {
    const d = this.domain(domain);
    d.progressAt = this.now();
    if (position <= d.done) return;
    d.ahead.add(position);
    while (d.ahead.delete(d.done + 1)) d.done++;
    this.release(d);
  }

  /**
   * Declares every position of `domain` below `position` performed: the
   * records that held them are lost (they were not stable when the primary
   * failed), so nothing will ever perform them.
   */
  skipBelow(domain: bigint, position: number): void {
    const d = this.domain(domain);
    if (position - 1 <= d.done) return;
    d.done = position - 1;
    for (const p of d.ahead) if (p <= d.done) d.ahead.delete(p);
    while (d.ahead.delete(d.done + 1)) d.done++;
    d.progressAt = this.now();
    this.release(d);
  }

  private release(d: Domain): void {
    for (const [p, go] of d.waiters) {
      if (p <= d.done + 1) {
        d.waiters.delete(p);
        go();
      }
    }
  }

  /** Domains with a waiter, each with its lowest waiting position. */
  blocked(): LockDomainState[] {
    const out: LockDomainState[] = [];
    const now = this.now();
    for (const [domain, d] of this.domains) {
      if (d.waiters.size === 0) continue;
      out.push({ domain, done: d.done, lowestWaiting: Math.min(...d.waiters.keys()), idleMs: now - d.progressAt });
    }
    return out;
  }
}
