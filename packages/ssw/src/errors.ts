/**
 * Errors of the south-side wrap. Every error is an {@link FtcpError} from
 * `@ftcp/stable-buffer` with a stable string `code`; callers branch on the
 * code. The per-packet path never throws: parsers return an error value
 * (see `wire/ipv4.ts`, `wire/tcp.ts`), and only the convenience entry points
 * that are meant for tools and tests turn one into an exception.
 */
import { ErrorCode, FtcpError } from '@ftcp/stable-buffer';
import type { MalformedReason } from './wire/tcp.js';

/** Stable error codes specific to the south-side wrap. */
export const SswErrorCode = {
  /** A packet failed a length or format check; `reason` says which. */
  MALFORMED_PACKET: 'FTCP_ERR_MALFORMED_PACKET',
  /** A textual IPv4 address could not be parsed. */
  BAD_ADDRESS: 'FTCP_ERR_BAD_ADDRESS',
  /** The native addon is not built or failed to load. */
  NATIVE_UNAVAILABLE: 'FTCP_ERR_NATIVE_UNAVAILABLE',
  /** An NFQUEUE operation failed (open, verdict); `errno` says why. */
  NFQUEUE: 'FTCP_ERR_NFQUEUE',
  /** A raw-socket operation failed (open, send); `errno` says why. */
  RAW_SOCKET: 'FTCP_ERR_RAW_SOCKET',
  /** The kernel refused an rtnetlink request (an address change); `errno` says why. */
  NETLINK: 'FTCP_ERR_NETLINK',
  /** A network device named in a call does not exist (in this network namespace). */
  NO_SUCH_DEVICE: 'FTCP_ERR_NO_SUCH_DEVICE',
  /** The connection table is full: a connection could not be adopted. */
  TABLE_FULL: 'FTCP_ERR_TABLE_FULL',
  /** The queue or socket was already closed. */
  CLOSED: ErrorCode.CLOSED,
  /** A configuration value is out of range (shared code). */
  BAD_CONFIG: ErrorCode.BAD_CONFIG,
} as const;

/** A packet that failed a length or format check. */
export class MalformedPacketError extends FtcpError {
  /** Which check failed, as returned by the parser. */
  readonly reason: MalformedReason;

  constructor(reason: MalformedReason, options?: { cause?: unknown }) {
    super(SswErrorCode.MALFORMED_PACKET, `malformed packet: ${reason}`, options);
    this.name = 'MalformedPacketError';
    this.reason = reason;
  }
}
