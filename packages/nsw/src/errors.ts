/**
 * Errors of the north-side wrap. Bad input from a shim or in a record is an
 * {@link FtcpError} with a stable `code`; callers and tests branch on the code,
 * never on the message. Shared codes (malformed, truncated, bad version, ...)
 * come from `@ftcp/stable-buffer`; the codes below are the NSW's own.
 */
import { ErrorCode, FtcpError, isFtcpError } from '@ftcp/stable-buffer';

export { ErrorCode, FtcpError, isFtcpError };

/** Error codes only the NSW reports. */
export const NswErrorCode = {
  /** A replica's call does not match the primary's record (FT-TCP 3.7; DESIGN invariant 5). */
  DIVERGENCE: 'FTCP_ERR_DIVERGENCE',
  /** A message that is well formed but not allowed now, e.g. a CALL before HELLO. */
  PROTOCOL_STATE: 'FTCP_ERR_PROTOCOL_STATE',
  /** A CALL whose call number is not the next one of its stream. */
  OUT_OF_ORDER: 'FTCP_ERR_OUT_OF_ORDER_CALL',
  /** A HELLO for a stream another live connection already speaks for. */
  DUPLICATE_STREAM: 'FTCP_ERR_DUPLICATE_STREAM',
  /** A HELLO whose mode is not the agent's mode (a replica talking to a primary's agent). */
  WRONG_MODE: 'FTCP_ERR_WRONG_MODE',
  /** A replicated connection cannot be rebuilt: its plan failed or does not fit (DESIGN "Failover", step 4). */
  REBUILD_FAILED: 'FTCP_ERR_REBUILD_FAILED',
} as const;
