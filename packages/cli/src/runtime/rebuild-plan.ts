/**
 * How a promoted backup rebuilds each replicated connection (DESIGN.md
 * "Failover, in order", step 4): the TCP state the client believes in, taken
 * from the stable buffer's records of the old primary, and the replica's own
 * positions after its roll-forward.
 *
 * We rebuild with TCP_REPAIR rather than the paper's spoofed handshake with
 * SSW deltas (FT-TCP 3.9): the socket gets the old primary's ISNs, window
 * scales, SACK and timestamps directly, so the SSW maps nothing and every
 * later segment is ordinary; the cost is CAP_NET_ADMIN in the server process.
 */
import type { RebuildPlan, ReplicatedConnection, TcpRebuildState } from '@ftcp/nsw';
import { ErrorCode, FtcpError, type ConnRecord } from '@ftcp/stable-buffer';

/**
 * How far ahead of the newest TSval the client is known to have seen the
 * rebuilt socket starts its TSvals. The client's PAWS check (RFC 7323 5.3)
 * drops a segment whose TSval is behind the last it accepted, and the
 * client-ack records that tell us that TSval may be stale by however long
 * the server sent only pure ACKs; a jump ahead is harmless (only "behind" is
 * checked, and the 2^31 window is 24 days of milliseconds), so the margin is
 * an hour.
 */
export const TSVAL_MARGIN = 3_600_000;

/**
 * The TSval a rebuilt connection (by TCP_REPAIR or by handshake) starts at,
 * in the client's view: {@link TSVAL_MARGIN} past the newest TSval of the
 * old primary the client is known to have seen (its highest logged TSecr,
 * or the SYN-ACK's).
 */
export function firstTsVal(rec: Pick<ConnRecord, 'serverTsval'>, clientTsEcr: number): number {
  return ((clientTsEcr !== 0 ? clientTsEcr : rec.serverTsval) + TSVAL_MARGIN) >>> 0;
}

/** Largest window the rebuilt socket advertises at first: the old primary's right edge must not be far beyond it. */
const MAX_OUR_WINDOW = 4 * 1024 * 1024;

/** What the buffer knows of one connection of the old primary. */
export interface LoggedConnection {
  rec: ConnRecord;
  /** Client bytes logged contiguously from offset 0 (a FIN not counted). */
  stableDataEnd: number;
  /** Outstream offset the client acknowledged, as last logged. */
  clientAckOffset: number;
  /** The client's last logged window, bytes (0 if none was logged). */
  clientWindow: number;
  /** Highest TSecr the client echoed (0 if none was logged). */
  clientTsEcr: number;
}

/** Host-order IPv4 number to dotted quad. */
export function dotted(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.');
}

/**
 * The server offset a rebuilt socket starts acknowledged at, which is also
 * its send edge on leaving TCP_REPAIR (the unacknowledged outstream is
 * written after that, as ordinary sends). The client may have acknowledged
 * more than the replica's send buffer knows (client-ack records still on
 * their way), never more than the replica sent: beyond that the replica
 * sends the same bytes again, live, and the socket starts behind the client.
 */
export function rebuiltSendStart(conn: Pick<ReplicatedConnection, 'ackedOffset' | 'sentOffset'>, logged: Pick<LoggedConnection, 'clientAckOffset'>): number {
  return Math.min(Math.max(conn.ackedOffset, logged.clientAckOffset), conn.sentOffset);
}

/**
 * The rebuild of `conn` (the replica's view: what it consumed and sent)
 * against `logged` (the client's view, from the buffer). `inq` must be the
 * client bytes from the replica's instream offset to `stableDataEnd`.
 * Throws an {@link FtcpError} (CONFLICT) when the two views cannot both be
 * true, which would mean the replica consumed bytes that were never stable.
 */
export function planRebuild(conn: ReplicatedConnection, logged: LoggedConnection, inq: Buffer): RebuildPlan {
  const { rec } = logged;
  if (conn.instreamOffset > logged.stableDataEnd) {
    throw new FtcpError(ErrorCode.CONFLICT, `connection ${rec.connId}: the replica read ${conn.instreamOffset} client bytes, only ${logged.stableDataEnd} are stable`);
  }
  if (inq.length !== logged.stableDataEnd - conn.instreamOffset) {
    throw new FtcpError(ErrorCode.CONFLICT, `connection ${rec.connId}: ${inq.length} unread bytes given, ${logged.stableDataEnd - conn.instreamOffset} expected`);
  }
  const acked = rebuiltSendStart(conn, logged);
  const outq = conn.unacked.subarray(acked - conn.ackedOffset);
  const state: TcpRebuildState = {
    localAddress: dotted(rec.serverIp),
    localPort: rec.serverPort,
    peerAddress: dotted(rec.clientIp),
    peerPort: rec.clientPort,
    sndUna: (rec.serverIsn + 1 + acked) >>> 0,
    rcvNxt: (rec.clientIsn + 1 + logged.stableDataEnd) >>> 0,
    mss: rec.mss,
    sndWscale: rec.clientWscale,
    rcvWscale: rec.serverWscale,
    sackOk: rec.sackOk,
    timestamps: rec.timestamps,
    tsVal: rec.timestamps ? firstTsVal(rec, logged.clientTsEcr) : 0,
    peerWindow: logged.clientWindow > 0 ? logged.clientWindow : 65535,
    ourWindow: Math.min(65535 * 2 ** rec.serverWscale, MAX_OUR_WINDOW),
  };
  return { state, inq, outq };
}
