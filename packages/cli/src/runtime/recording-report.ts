/**
 * What a node in record mode (the primary, or a backup once it took over)
 * adds to its status report (issue 5): the output-commit stall and the
 * stable-seq lag. One function, so both kinds of node report them alike.
 */
import type { NswAgent } from '@ftcp/nsw';
import type { RecordingWrapStatus } from '@ftcp/ssw';
import type { FtcpError, Logger, StableBufferClient } from '@ftcp/stable-buffer';

/** How often refused writes are logged again while they go on. */
const REFUSAL_REPEAT_MS = 10_000;

export interface RecordingReport {
  /**
   * How long, in ms, the server's oldest blocked send (write, sendfile) on a
   * replicated connection has waited for its thread's records to be stable;
   * 0 when none waits. From the agent, not the buffer client's oldest
   * unacknowledged write: that one ages with every client segment in flight
   * too, and misses records the agent has not sent yet.
   */
  outputCommitStallMs: number;
  /** The longest such wait since the previous report, answered or not. */
  outputCommitStallMaxMs: number;
  /** Client bytes (sequence space) received beyond stable-seq, over every connection. */
  stableLagBytes: number;
  /** The connections that lag most, most first, each with what its client acknowledged. */
  stableLag: RecordingWrapStatus['stableLag'];
  /** Writes the buffer refused for good (a full log): the service waits while they go on. */
  writesRefused: number;
}

/**
 * The record-mode fields of a node's report. Reads and resets the agent's
 * longest stall, so call it once per report.
 */
export function recordingReport(agent: NswAgent | null, wrap: RecordingWrapStatus | undefined, client: StableBufferClient): RecordingReport {
  return {
    outputCommitStallMs: Math.round(agent?.oldestStallMs() ?? 0),
    outputCommitStallMaxMs: Math.round(agent?.takeLongestStallMs() ?? 0),
    stableLagBytes: wrap?.stableLagBytes ?? 0,
    stableLag: wrap?.stableLag ?? [],
    writesRefused: client.writesRefused,
  };
}

/**
 * Logs the buffer's refusals of a recording node's writes. A refused client
 * segment stays unacknowledged and a refused call record holds its thread's
 * sends, so the service waits, with no error anywhere else: this is where
 * the operator learns why. At most once per REFUSAL_REPEAT_MS.
 */
export function logWriteRefusals(client: StableBufferClient, logger: Logger): void {
  let saidAt = -Infinity;
  client.on('write-refused', (err: FtcpError) => {
    const now = performance.now();
    if (now - saidAt < REFUSAL_REPEAT_MS) return;
    saidAt = now;
    logger.log('error', 'write-refused', { code: err.code, error: err.message, refused: client.writesRefused, hint: 'the service waits until the buffer takes writes again; see its log' });
  });
}
