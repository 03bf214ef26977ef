/**
 * Errors of ftcp. Every error a caller may branch on carries a stable string
 * `code`; messages are for people and may change. Bad input from outside is an
 * {@link FtcpError}; a broken internal invariant is a `node:assert` failure.
 */

/** Stable error codes shared by every ftcp package. */
export const ErrorCode = {
  MALFORMED_FRAME: 'FTCP_ERR_MALFORMED_FRAME',
  TRUNCATED_FRAME: 'FTCP_ERR_TRUNCATED_FRAME',
  OVERSIZED_FRAME: 'FTCP_ERR_OVERSIZED_FRAME',
  BAD_VERSION: 'FTCP_ERR_BAD_VERSION',
  UNKNOWN_TYPE: 'FTCP_ERR_UNKNOWN_TYPE',
  STALE_EPOCH: 'FTCP_ERR_STALE_EPOCH',
  NOT_WRITER: 'FTCP_ERR_NOT_WRITER',
  CONFLICT: 'FTCP_ERR_CONFLICT',
  UNKNOWN_CONNECTION: 'FTCP_ERR_UNKNOWN_CONNECTION',
  NOT_AVAILABLE: 'FTCP_ERR_NOT_AVAILABLE',
  LOG_TRUNCATED: 'FTCP_ERR_LOG_TRUNCATED',
  CAPACITY: 'FTCP_ERR_CAPACITY',
  TIMEOUT: 'FTCP_ERR_TIMEOUT',
  CLOSED: 'FTCP_ERR_CLOSED',
  BAD_CONFIG: 'FTCP_ERR_BAD_CONFIG',
  LISTEN: 'FTCP_ERR_LISTEN',
  STORE: 'FTCP_ERR_STORE',
  DATA_DIR_IN_USE: 'FTCP_ERR_DATA_DIR_IN_USE',
  INTERNAL: 'FTCP_ERR_INTERNAL',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error ftcp reports on purpose. */
export class FtcpError extends Error {
  /** Stable, documented code; branch on this, never on `message`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FtcpError';
    this.code = code;
  }
}

/** True when `err` is an {@link FtcpError} with the given code. */
export function isFtcpError(err: unknown, code?: string): err is FtcpError {
  return err instanceof FtcpError && (code === undefined || err.code === code);
}
