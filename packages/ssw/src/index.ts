/**
 * @ftcp/ssw: the south-side wrap of ftcp (FT-TCP 2.3, 3.3, 3.6, 3.11).
 *
 * Layers, bottom up:
 * - wire: pure packet code. Sequence arithmetic modulo 2^32, Internet
 *   checksums with RFC 1624 incremental updates, IPv4 and TCP views with
 *   length-checked parsers that return error values and in-place setters.
 * - connection table and rewriter: per-connection state and the per-segment
 *   mapping (deltas, ack clamp to stable-seq, window compensation,
 *   suppression, silent mode).
 * - {@link SouthSideWrap}: parse, look up, rewrite, verdict, counters.
 * - craft: ACKs the wrap sends on its own (eager acks, keep-alives).
 * - promotion: connections adopted from a dead primary (`pending` until
 *   their rebuilt socket speaks), and the gratuitous ARP that moves the VIP.
 */

/** Package version, for status output and compatibility checks. */
export const VERSION = '0.1.0';

export {
  offsetToSeq,
  seq,
  seqAdd,
  seqDelta,
  seqDiff,
  seqForward,
  seqGe,
  seqGt,
  seqInRange,
  seqLe,
  seqLt,
  seqMax,
  seqMin,
  seqToOffset,
  u32Add,
  u32Diff,
  u32Max,
} from './wire/seq.js';
export type { SeqDelta, SeqNum } from './wire/seq.js';

export {
  combine,
  csumReplace,
  csumUpdate16,
  csumUpdate32,
  finish,
  fold,
  ipv4HeaderChecksum,
  onesSum,
  partialUpdate16,
  pseudoHeaderSum,
  tcpChecksum,
} from './wire/checksum.js';

export {
  formatIpv4Address,
  IP_PROTO_TCP,
  IPV4,
  parseIpv4,
  parseIpv4Address,
  verifyIpv4Checksum,
  writeIpv4Checksum,
} from './wire/ipv4.js';
export type { Ipv4Header, Ipv4MalformedReason, Ipv4ParseResult, ParseIpv4Options } from './wire/ipv4.js';

export {
  completeTcpChecksum,
  hasFlag,
  MAX_WINDOW_SCALE,
  parseTcpOptions,
  parseTcpPacket,
  parseTcpPacketOrThrow,
  readTcpChecksum,
  retainSackBlocks,
  segmentLength,
  setAck,
  setSackBlock,
  setSeq,
  setTsEcr,
  setTsVal,
  setWindow,
  TCP,
  TcpFlag,
  tcpLength,
  TcpOptionKind,
  verifyTcpChecksum,
  writeTcpChecksum,
} from './wire/tcp.js';
export type {
  MalformedReason,
  ParseTcpOptions,
  SackBlock,
  TcpOptions,
  TcpOptionsResult,
  TcpPacket,
  TcpParseResult,
  UnknownOption,
} from './wire/tcp.js';

export {
  advanceStable,
  checkAdoptedConnection,
  ConnTable,
  connId,
  goLive,
  incomingWindowShift,
  markHandshakeStable,
  outgoingWindowShift,
  promote,
  sackNegotiated,
  timestampsNegotiated,
  ZERO_DELTAS,
} from './conntable.js';
export type {
  AdoptedConnection,
  AdoptedConnRecord,
  ConnDeltas,
  ConnKey,
  ConnMode,
  ConnTableOptions,
  Connection,
  OpenConnection,
  SynOptions,
} from './conntable.js';

export { incomingEnd, MAX_WINDOW_FIELD, noteClientSegment, rewriteIncoming, rewriteOutgoing, synOptionsOf } from './rewrite.js';
export type { IncomingDecision, OutgoingDecision } from './rewrite.js';

export { SouthSideWrap } from './wrap.js';
export type { DropReason, PacketMeta, Verdict, WrapCounters, WrapOptions, WrapStatus } from './wrap.js';

export { ackIsDue, craftAck, craftedAckNumber, craftedSeqNumber, craftedTsVal } from './craft.js';
export type { CraftAckOptions } from './craft.js';

export { MalformedPacketError, SswErrorCode } from './errors.js';

export { NfQueue, RawInjector } from './nfqueue.js';
export type { AcceptOptions, NfQueueOptions, QueuedPacket } from './nfqueue.js';

export { ServiceRules, CHAIN_PREFIX, listRules, removeStaleRules, renderRules } from './netfilter/rules.js';
export type { OutgoingQueueing, ServiceRuleSpec } from './netfilter/rules.js';

export { ACK_STRATEGIES, GO_LIVE_DUPLICATE_ACKS, HANDSHAKE_SYN_GAP_MS, HANDSHAKE_SYN_TRIES, Recorder } from './recorder.js';
export type { AckStrategy, HandshakeRebuildRequest, HandshakeRebuildResult, PacketInjector, PacketVerdicts, RecordedPacket, RecorderCounters, RecorderOptions } from './recorder.js';
export { craftClientSegment, HANDSHAKE_REBUILD_CHUNK, HandshakeRebuild } from './handshake-rebuild.js';
export type { ClientSegment, HandshakeRebuildInput, HandshakeStep } from './handshake-rebuild.js';

export { RecordingWrap } from './recording-wrap.js';
export type { RecordingWrapOptions, RecordingWrapStatus } from './recording-wrap.js';

export { addLocalAddress, removeLocalAddress } from './address.js';
export { sendGratuitousArp } from './garp.js';
export type { GratuitousArpOptions } from './garp.js';
export { ARP_FRAME, gratuitousArpFrame } from './wire/arp.js';
