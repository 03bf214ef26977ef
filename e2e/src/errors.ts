/**
 * Errors of the e2e test bed. Like every ftcp package, an error a caller may
 * branch on carries a stable string `code`; messages are for people (they name
 * the command that failed and quote its stderr) and may change.
 */

/** Stable error codes of the test bed. */
export const TestbedErrorCode = {
  /** An external command (ip, tc, tcpdump, ...) exited non-zero or timed out. */
  COMMAND_FAILED: 'FTCP_E2E_COMMAND_FAILED',
  /** A wait (for a line, an exit, a namespace to empty) ran out of time. */
  TIMEOUT: 'FTCP_E2E_TIMEOUT',
  /** A process spawned in a host exited before it did what was awaited. */
  EXITED: 'FTCP_E2E_EXITED',
  /** A pcap file is not in the classic format or has a bad header. */
  BAD_PCAP: 'FTCP_E2E_BAD_PCAP',
  /** A caller asked for something the test bed cannot do (bad argument, destroyed bed). */
  BAD_USAGE: 'FTCP_E2E_BAD_USAGE',
} as const;

/** One of the {@link TestbedErrorCode} values. */
export type TestbedErrorCodeValue = (typeof TestbedErrorCode)[keyof typeof TestbedErrorCode];

/** Base class of every error the test bed reports on purpose. */
export class TestbedError extends Error {
  /** Stable code; branch on this, never on `message`. */
  readonly code: TestbedErrorCodeValue;

  constructor(code: TestbedErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TestbedError';
    this.code = code;
  }
}
