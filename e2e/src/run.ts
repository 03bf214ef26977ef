/**
 * Running external commands (ip, tc, tcpdump, sysctl) with a time limit and an
 * error that says which command failed and what it printed on stderr.
 */
import { execFile, execFileSync } from 'node:child_process';
import { TestbedError, TestbedErrorCode } from './errors.js';

/** What a finished command printed. */
export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link run} and {@link runSync}. */
export interface RunOptions {
  /** Kill the command (SIGKILL) after this many milliseconds; default 10 000. */
  readonly timeoutMs?: number;
  /** Text written to the command's stdin. */
  readonly input?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
// Enough for `ip -j` dumps and tcpdump text; captures go to files, never here.
const MAX_BUFFER = 16 * 1024 * 1024;

/** Renders a command line for messages; quotes arguments that need it. */
export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function failure(cmd: string, args: readonly string[], err: unknown, stderr: string): TestbedError {
  const e = err as NodeJS.ErrnoException & { status?: number | null; code?: unknown; killed?: boolean; signal?: string | null };
  const why =
    e.killed === true || e.signal === 'SIGKILL'
      ? 'was killed (time limit?)'
      : typeof e.code === 'number'
        ? `exited with status ${e.code}`
        : typeof e.status === 'number'
          ? `exited with status ${e.status}`
          : typeof e.code === 'string'
            ? `could not run (${e.code})`
            : 'failed';
  const tail = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
  return new TestbedError(TestbedErrorCode.COMMAND_FAILED, `\`${formatCommand(cmd, args)}\` ${why}${tail}`, {
    cause: err,
  });
}

/**
 * Runs `cmd args` to completion without a shell.
 *
 * @returns its stdout and stderr as text.
 * @throws TestbedError `FTCP_E2E_COMMAND_FAILED` when it exits non-zero, cannot
 *   be started, or outlives `timeoutMs`; the message holds the command line and
 *   its stderr.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: MAX_BUFFER, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(failure(cmd, args, err, stderr));
        else resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/**
 * The synchronous twin of {@link run}, for process 'exit' hooks, where
 * nothing asynchronous runs any more.
 */
export function runSync(cmd: string, args: readonly string[], opts: RunOptions = {}): RunResult {
  try {
    const stdout = execFileSync(cmd, args, {
      timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      maxBuffer: MAX_BUFFER,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.input !== undefined ? { input: opts.input } : {}),
    });
    return { stdout, stderr: '' };
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '');
    throw failure(cmd, args, err, stderr);
  }
}
