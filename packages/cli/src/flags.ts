/**
 * Flag parsing shared by commands: sizes with units, the buffer's endpoint, and turning an
 * FtcpError into a CLI failure that says what to try next.
 */
import { Errors, Flags } from '@oclif/core';
import { ErrorCode, FtcpError, endpointProblem } from '@ftcp/stable-buffer';

/** Exit codes every ftcp command documents. */
export const ExitCode = {
  OK: 0,
  /** A flag or config value is wrong (oclif uses 2 for parse errors too). */
  BAD_USAGE: 2,
  /** Could not start: address in use, store unreadable, ... */
  START_FAILED: 3,
} as const;

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** Parses "8GiB", "512m", "1048576" into bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `cannot read size "${text}": use a number with an optional unit, like 512MiB or 8GiB`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/** Fails the command with the error's message, a suggestion and a documented exit code. */
export function fail(err: unknown, suggestions: string[] = []): never {
  if (err instanceof FtcpError) {
    const exit = err.code === ErrorCode.BAD_CONFIG ? ExitCode.BAD_USAGE : ExitCode.START_FAILED;
    throw new Errors.CLIError(`${err.message} [${err.code}]`, { exit, suggestions });
  }
  throw err;
}

/**
 * `--buffer`: the stable buffer's endpoint, checked as it is parsed so that
 * a typo fails with what to write (exit 2), not as ZeroMQ's "Invalid argument".
 */
export function bufferFlag(opts: { env?: string } = {}) {
  return Flags.custom<string>({
    summary: 'The stable buffer\'s ZeroMQ endpoint, like tcp://10.0.0.2:7400.',
    required: true,
    ...(opts.env !== undefined ? { env: opts.env } : {}),
    parse: async (input) => {
      const problem = endpointProblem(input, 'connect');
      if (problem !== undefined) throw new Errors.CLIError(problem, { exit: ExitCode.BAD_USAGE });
      return input;
    },
  })();
}
