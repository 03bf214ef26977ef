/**
 * @ftcp/stable-buffer: the stable buffer of FT-TCP as a service and a library.
 * `StableBufferServer` embeds the buffer; `StableBufferClient` is what a
 * primary and a backup use to talk to it.
 */
export { ErrorCode, FtcpError, isFtcpError } from './errors.js';
export type { ErrorCodeValue } from './errors.js';
export { StableBufferServer, serverOptionsSchema } from './server.js';
export { checkEndpoint, endpointProblem } from './endpoint.js';
export type { ServerOptions, ServerCounters } from './server.js';
export { StableBufferClient, Subscription } from './client.js';
export type { ClientOptions, SubscriptionEvent } from './client.js';
export { Heartbeat, DEFAULT_STALL_LIMIT_MS } from './heartbeat.js';
export type { HeartbeatOptions } from './heartbeat.js';
export { CallWriter, ReplicaFeed } from './replica-feed.js';
export type { PrimaryFailure, ReplicaFeedOptions } from './replica-feed.js';
export {
  BackupMode,
  CloseReason,
  HEADER_SIZE,
  MAX_FRAME_SIZE,
  MsgType,
  PROTOCOL_VERSION,
  Role,
  SegFlag,
  decodeFrame,
  decodeRecord,
  encodeFrame,
  encodeRecord,
} from './protocol/messages.js';
export type {
  CallBatchRecord,
  CallRecord,
  ClientAckRecord,
  CloseRecord,
  ConnRecord,
  Frame,
  LogRecord,
  Message,
  Positions,
  SegmentRecord,
} from './protocol/messages.js';
export type { Durability } from './store/store.js';
export { Detector, systemClock } from './detector/detector.js';
export type { Clock, DetectorOptions, DetectorState } from './detector/detector.js';
export { makeCurveKeyPair } from './curve.js';
export type { CurveKeyPair } from './curve.js';
export { jsonLogger, silentLogger } from './log.js';
export type { Logger, LogLevel } from './log.js';
export { processAlive } from './store/dirlock.js';
