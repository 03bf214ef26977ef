/**
 * The seam between the NSW agent and the stable buffer. A record agent
 * appends each call record of a stream and learns when it is stable (FT-TCP
 * 3.4: "when the NSW receives an acknowledgment from the stable buffer"); a
 * playback agent reads a stream's records back in order (FT-TCP 3.7).
 *
 * {@link MemoryRecordSink} is an in-process implementation of both sides that
 * really keeps the records; on a real primary and backup they are the
 * stable buffer's `CallWriter` and `ReplicaFeed`.
 */
import { ErrorCode, FtcpError } from './errors.js';

/**
 * Where a primary's call records go (`CallWriter` of `@ftcp/stable-buffer`
 * has this shape). Call numbers are 1-based and contiguous per stream.
 */
export interface RecordSink {
  /**
   * Appends record `data` as call `callNo` of `stream`. Resolves once the
   * record is stable (it would survive the primary's host); rejects with an
   * {@link FtcpError} when it never will be (e.g. the buffer refused it).
   * Consecutive calls of a stream may get one and the same promise (a batch
   * that becomes stable as a whole): the agent then waits on it once.
   */
  append(stream: string, callNo: number, data: Buffer): Promise<void>;
}

/** Where a replica's call records come from (`ReplicaFeed` of `@ftcp/stable-buffer` has this shape). */
export interface RecordSource {
  /**
   * Resolves with the data of call `callNo` of `stream` once that record is
   * stable, waiting as long as it takes (a replica ahead of the log waits).
   * Each record is read once, in call order. Rejects with
   * {@link ErrorCode.CLOSED} when `signal` aborts.
   */
  read(stream: string, callNo: number, signal?: AbortSignal): Promise<Buffer>;
}

interface Waiter {
  callNo: number;
  resolve: (data: Buffer) => void;
}

/**
 * Keeps records in memory. Records are stable when appended, unless the sink
 * is held ({@link hold}): then appends wait, unreadable and unacknowledged,
 * until {@link release}, which is how tests hold back a buffer.
 */
export class MemoryRecordSink implements RecordSink, RecordSource {
  private readonly streams = new Map<string, Buffer[]>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private held: (() => void)[] | null = null;
  private readonly pendingNext = new Map<string, number>();

  async append(stream: string, callNo: number, data: Buffer): Promise<void> {
    const expected = (this.pendingNext.get(stream) ?? (this.streams.get(stream)?.length ?? 0) + 1);
    if (callNo !== expected) {
      throw new FtcpError(ErrorCode.CONFLICT, `stream ${stream}: call ${callNo} appended, expected ${expected}`);
    }
    this.pendingNext.set(stream, callNo + 1);
    const copy = Buffer.from(data);
    if (this.held) {
      await new Promise<void>((resolve) => this.held!.push(resolve));
    }
    this.store(stream, copy);
  }

  private store(stream: string, data: Buffer): void {
    let list = this.streams.get(stream);
    if (!list) this.streams.set(stream, (list = []));
    list.push(data);
    const set = this.waiters.get(stream);
    if (!set) return;
    for (const w of set) {
      if (w.callNo === list.length) {
        set.delete(w);
        w.resolve(data);
      }
    }
  }

  read(stream: string, callNo: number, signal?: AbortSignal): Promise<Buffer> {
    const have = this.streams.get(stream)?.[callNo - 1];
    if (have) return Promise.resolve(have);
    return new Promise<Buffer>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new FtcpError(ErrorCode.CLOSED, 'read aborted'));
        return;
      }
      let set = this.waiters.get(stream);
      if (!set) this.waiters.set(stream, (set = new Set()));
      const waiter: Waiter = {
        callNo,
        resolve: (data) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(data);
        },
      };
      const onAbort = (): void => {
        set.delete(waiter);
        reject(new FtcpError(ErrorCode.CLOSED, 'read aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(waiter);
    });
  }

  /** Holds back stability: later appends resolve only at {@link release}. */
  hold(): void {
    this.held ??= [];
  }

  /** Makes every held record stable, in order, and stops holding. */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const resolve of held) resolve();
  }

  /** Stable records of a stream, in call order (copies). */
  records(stream: string): Buffer[] {
    return (this.streams.get(stream) ?? []).map((b) => Buffer.from(b));
  }

  /** Names of the streams that have stable records, sorted. */
  streamNames(): string[] {
    return [...this.streams.keys()].sort();
  }
}
