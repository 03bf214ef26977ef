/**
 * @ftcp/nsw: the north-side wrap of FT-TCP. A C shim loaded with LD_PRELOAD
 * ({@link shimPath}) records the results of a server's nondeterministic calls
 * and plays them back in a replica; {@link NswAgent} serves the shims and
 * moves records to and from a {@link RecordSink} (the stable buffer).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Package version, for status output and compatibility checks. */
export const VERSION = '0.1.0';

/**
 * Absolute path of the built shim, for `LD_PRELOAD`. Built by the package's
 * `build` script (`native/Makefile`); not present before the first build.
 */
export function shimPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '../../native/build/libftcp_nsw.so');
}

/** Exit code of a process the shim stopped because it diverged from the primary. */
export const SHIM_EXIT_DIVERGED = 86;
/** Exit code of a process the shim stopped for a fatal condition (agent lost, bad config). */
export const SHIM_EXIT_FATAL = 87;

export { NswAgent } from './agent.js';
export type { AgentCounters, AgentMode, Divergence, LockGap, NswAgentOptions } from './agent.js';
export { MemoryRecordSink } from './sink.js';
export { decodeSockaddr } from './connections.js';
export type { InstreamSource, PeerAddress, ReplicatedConnection } from './connections.js';
export { MAX_REBUILD_QUEUE, checkRebuildPlan } from './rebuild.js';
export type { RebuildPlan, RebuildReport, RebuildSource, TcpRebuildState } from './rebuild.js';
export type { RecordSink, RecordSource } from './sink.js';
export { NswErrorCode } from './errors.js';
export {
  AdoptStep,
  CallFlag,
  CallKind,
  FrameSplitter,
  MAX_FRAME,
  MAX_IO,
  MAX_PAYLOAD,
  NSW_PROTOCOL_VERSION,
  NswMsgType,
  ShimMode,
  callKindName,
  decodeCallData,
  decodeLockPosition,
  decodeMessage,
  encodeCallData,
  encodeLockPosition,
  encodeMessage,
  sendHash,
} from './protocol.js';
export type { CallBody, CallData, LockPosition, NswMessage, ShimModeValue } from './protocol.js';
