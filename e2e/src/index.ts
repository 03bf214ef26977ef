/**
 * The ftcp e2e test bed: hosts as network namespaces, fail-stop crashes,
 * VIP moves with gratuitous ARP, rate limits, captures and a pcap reader.
 */
export { TestbedError, TestbedErrorCode, type TestbedErrorCodeValue } from './errors.js';
export { run, runSync, formatCommand, type RunResult, type RunOptions } from './run.js';
export { NAME_PREFIX, newTag, nsName, parseNsName, nextPort, type ParsedNsName } from './names.js';
export {
  nsCreate,
  nsList,
  nsPids,
  nsKillAll,
  nsDelete,
  nsExec,
  ipIn,
  nsSysctl,
  nsLinks,
  pidAlive,
  signalPid,
  type KillAllOptions,
  type LinkInfo,
} from './netns.js';
export { HostProcess, type ExitStatus, type SpawnOptions } from './process.js';
export { sendGratuitousArp, type GarpOptions } from './garp.js';
export { setTbf, clearQdisc, showQdisc, tbfBurstBytes, type TbfOptions } from './ratelimit.js';
export { parsePcap, readPcap, flagString, hasFlag, describeSegment, TcpFlag, LinkType, type TcpSegment, type PcapCapture } from './pcap.js';
export { Capture, startCapture, type CaptureOptions } from './capture.js';
export { cleanupStale, liveCount } from './cleanup.js';
export {
  Testbed,
  HOST_ROLES,
  LAN_IF,
  REPLICA_IF,
  REPLICA_NET_IF,
  REPLICA_BRIDGE_IF,
  BRIDGE_IF,
  PARTITION_CHAIN,
  DEFAULT_ADDRESSES,
  type HostRole,
  type NsRole,
  type Host,
  type TestbedAddresses,
  type TestbedOptions,
  type LinkRate,
  type CrashReport,
  type MoveVipOptions,
  type MoveVipReport,
  type Neighbor,
} from './testbed.js';
export { PEER_TOOL, startPeer } from './peer-path.js';
export { STREAM_TOOL, SSW_RECORD_TOOL, FTCP_BIN, ECHO_CLIENT_TOOL, ECHOD_BIN, REDIS_INCR_CLIENT_TOOL, FETCH_CLIENT_TOOL, BUFFER_STATUS_TOOL } from './tool-paths.js';
export {
  runFailover,
  describeReport,
  reportLogs,
  summarizeCapture,
  mulberry32,
  scenarioSeed,
  type BackupMode,
  type FailoverOptions,
  type FailoverReport,
  type EchoClientDone,
  type EchoClientError,
  type TakeoverTimes,
  type Speaker,
  type CaptureSummary,
  type StallSnapshot,
} from './failover.js';
export {
  runScenario,
  describeScenario,
  scenarioLogs,
  speakerOrder,
  TEST_FAILURE_TIMEOUT_MS,
  testFailureTimeoutMs,
  type BackupJoin,
  type Scenario,
  type ScenarioContext,
  type ScenarioOptions,
  type ScenarioReport,
  type CommandSpec,
  type ClientOutcome,
  type Verdict,
  type FaultKind,
  type FaultPoint,
  type BufferRestart,
  type PartitionReport,
  type NodeEvent,
} from './scenario.js';
export {
  echoScenario,
  httpScenario,
  redisScenario,
  tlsScenario,
  iperfScenario,
  writeSeededFile,
  sha256File,
  SYSTEM_PYTHON,
  type EchoScenarioOptions,
  type HttpScenarioOptions,
  type RedisScenarioOptions,
  type TlsScenarioOptions,
  type IperfScenarioOptions,
} from './scenarios.js';
export { BufferWatch, caughtUpWith, BUFFER_MODE, type BufferSnapshot, type BufferBackupRow, type CatchUp } from './buffer-watch.js';
export {
  runSecondFailover,
  describeSecondFailover,
  secondFailoverSpeakers,
  type SecondFailoverOptions,
  type SecondFailoverReport,
  type SecondBackupJoin,
  type Detection,
} from './second-failover.js';
