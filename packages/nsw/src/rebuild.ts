/**
 * Promotion of replicated connections (DESIGN.md "Failover, in order", step
 * 4). When a promoted replica goes live, its shim asks the agent (ADOPT) to
 * rebuild each replicated descriptor of the process as a real TCP socket in
 * exactly the client's view of the connection; the agent asks a
 * {@link RebuildSource} for the {@link RebuildPlan} and sends it to the shim
 * (REBUILD), which rebuilds the socket with TCP_REPAIR
 * (`native/repair/tcp_repair.c`), puts it at the descriptor's number and
 * reports how it went (ADOPTED, the agent's `'rebuilt'` event).
 */
import { isIPv4 } from 'node:net';
import type { PeerAddress, ReplicatedConnection } from './connections.js';
import { FtcpError, NswErrorCode } from './errors.js';

/**
 * A TCP connection as the client sees it: every field of `struct
 * ftcp_tcp_state` (`native/repair/tcp_repair.h`). Sequence numbers are the
 * connection's own (the old primary's ISNs), modulo 2^32.
 */
export interface TcpRebuildState {
  /** The server's IPv4 address (dotted quad): the service's address the client connected to. */
  localAddress: string;
  localPort: number;
  /** The client's IPv4 address (dotted quad). */
  peerAddress: string;
  peerPort: number;
  /** Our sequence number of the first byte the client has not acknowledged: `outq` is sent from here. */
  sndUna: number;
  /**
   * RCV.NXT: the client's sequence number just past the last stable client
   * byte. The receive queue is refilled with `inq`, which ends here, so the
   * first byte the replica has not consumed is `rcvNxt - inq.length`.
   */
  rcvNxt: number;
  /** Maximum segment size toward the client, bytes. */
  mss: number;
  /** The client's window scale shift (RFC 7323 2.2), 0..14: it scales the windows the client advertises. */
  sndWscale: number;
  /** Our window scale shift, 0..14, as the SYN-ACK announced it. */
  rcvWscale: number;
  /** SACK was negotiated. */
  sackOk: boolean;
  /** Timestamps were negotiated. */
  timestamps: boolean;
  /** The next TSval we send; must not be behind the last one the client saw, or PAWS (RFC 7323 5) drops our segments. */
  tsVal: number;
  /** The client's last advertised window, bytes (already scaled). */
  peerWindow: number;
  /** The window we last advertised, bytes. */
  ourWindow: number;
}

/** Everything the shim needs to rebuild one connection. */
export interface RebuildPlan {
  state: TcpRebuildState;
  /**
   * Stable client bytes the replica has not read (from its
   * `instreamOffset`): they go into the rebuilt socket's receive queue, as if
   * just received. At most {@link MAX_REBUILD_QUEUE} bytes.
   */
  inq: Buffer;
  /**
   * What the replica sent that the client has not acknowledged (the end of
   * its `unacked` send buffer): written on the rebuilt socket at once, from
   * `sndUna`. At most {@link MAX_REBUILD_QUEUE} bytes.
   */
  outq: Buffer;
}

/** Where a promoted replica's agent gets each connection's {@link RebuildPlan} (on a backup: the stable buffer's records). */
export interface RebuildSource {
  /**
   * The plan for `conn`, a snapshot taken once every stream of the process
   * that holds it has consumed its records (so `instreamOffset` and
   * `unacked` are final). Rejects when the connection cannot be rebuilt; the
   * agent then refuses that one rebuild and the descriptor reads EOF.
   */
  plan(conn: ReplicatedConnection): Promise<RebuildPlan>;
}

/** How one adoption ended: the payload of the agent's `'rebuilt'` event. */
export interface RebuildReport {
  /** The stream whose going live adopted the connection. */
  stream: string;
  /** The descriptor number (the primary's); on success the rebuilt socket is there. */
  fd: number;
  /** The connection key (FNV-1a of the peer sockaddr). */
  key: bigint;
  /** The client, or null when the agent knows no connection with this key. */
  peer: PeerAddress | null;
  ok: boolean;
  /** Which step failed: 0 when rebuilt, otherwise an {@link AdoptStep} value or a TCP_REPAIR step (1..99). */
  step: number;
  /** What failed, for people (the step and errno name, or the agent's refusal). */
  error?: string;
}

/** Largest `inq` or `outq` of one plan, bytes (`FTCP_NSW_MAX_REBUILD_QUEUE`). */
export const MAX_REBUILD_QUEUE = 64 * 1024 * 1024;

const U32 = 0xffffffff;

function bad(what: string): FtcpError {
  return new FtcpError(NswErrorCode.REBUILD_FAILED, `rebuild plan: ${what}`);
}

function checkUint(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw bad(`${name} ${v} is not an integer in 0..${max}`);
}

/**
 * Checks that `plan` fits the REBUILD message and is meant for `peer` (when
 * given). Throws an {@link FtcpError} (REBUILD_FAILED) naming the field.
 */
export function checkRebuildPlan(plan: RebuildPlan, peer?: PeerAddress): void {
  const s = plan.state;
  if (!isIPv4(s.localAddress)) throw bad(`local address ${s.localAddress} is not IPv4 (only IPv4 connections are rebuilt)`);
  if (!isIPv4(s.peerAddress)) throw bad(`peer address ${s.peerAddress} is not IPv4 (only IPv4 connections are rebuilt)`);
  checkUint('localPort', s.localPort, 0xffff);
  checkUint('peerPort', s.peerPort, 0xffff);
  checkUint('sndUna', s.sndUna, U32);
  checkUint('rcvNxt', s.rcvNxt, U32);
  checkUint('mss', s.mss, 0xffff);
  // RFC 7323 2.3: a shift above 14 is treated as 14; the kernel refuses it under repair.
  checkUint('sndWscale', s.sndWscale, 14);
  checkUint('rcvWscale', s.rcvWscale, 14);
  checkUint('tsVal', s.tsVal, U32);
  checkUint('peerWindow', s.peerWindow, U32);
  checkUint('ourWindow', s.ourWindow, U32);
  if (typeof s.sackOk !== 'boolean' || typeof s.timestamps !== 'boolean') throw bad('sackOk and timestamps must be booleans');
  if (plan.inq.length > MAX_REBUILD_QUEUE) throw bad(`inq of ${plan.inq.length} bytes exceeds ${MAX_REBUILD_QUEUE}`);
  if (plan.outq.length > MAX_REBUILD_QUEUE) throw bad(`outq of ${plan.outq.length} bytes exceeds ${MAX_REBUILD_QUEUE}`);
  if (peer && (peer.address !== s.peerAddress || peer.port !== s.peerPort)) {
    throw bad(`it is for client ${s.peerAddress}:${s.peerPort}, the connection's client is ${peer.address}:${peer.port}`);
  }
}
