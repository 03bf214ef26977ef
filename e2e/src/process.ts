/**
 * A process running inside a host's namespace, with its output kept as lines
 * so a test can wait for "listening" or parse JSON events. `ip netns exec`
 * execs the command in its own process, so the pid seen here is the pid of
 * the command itself, and `ip netns pids` lists it.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { TestbedError, TestbedErrorCode } from './errors.js';
import { formatCommand } from './run.js';
import { signalPid } from './netns.js';

/** How a process ended. */
export interface ExitStatus {
  /** Exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it, or null. */
  readonly signal: NodeJS.Signals | null;
}

/** Options of {@link HostProcess.start}. */
export interface SpawnOptions {
  /** Extra environment variables, on top of this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory. */
  readonly cwd?: string;
}

type LinePredicate = RegExp | ((line: string) => boolean);

interface Waiter {
  readonly stream: 'stdout' | 'stderr';
  readonly test: (line: string) => boolean;
  readonly resolve: (line: string) => void;
}

function asTest(p: LinePredicate): (line: string) => boolean {
  return typeof p === 'function' ? p : (l) => p.test(l);
}

/** A command started in a namespace; see {@link HostProcess.start}. */
export class HostProcess {
  /** The host (role) it runs in, for messages. */
  readonly host: string;
  /** The command line, for messages. */
  readonly commandLine: string;
  /** The child process. */
  readonly child: ChildProcess;
  /** Its pid. */
  readonly pid: number;
  /** Every complete stdout line so far. */
  readonly stdoutLines: string[] = [];
  /** Every complete stderr line so far. */
  readonly stderrLines: string[] = [];
  /** Settles when the process has exited and its output is read to the end. */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private waiters: Waiter[] = [];

  private constructor(host: string, commandLine: string, child: ChildProcess) {
    this.host = host;
    this.commandLine = commandLine;
    this.child = child;
    if (child.pid === undefined) throw new TestbedError(TestbedErrorCode.COMMAND_FAILED, `could not start \`${commandLine}\``);
    this.pid = child.pid;
    for (const stream of ['stdout', 'stderr'] as const) {
      const src = child[stream];
      if (!src) continue;
      const rl = createInterface({ input: src, crlfDelay: Infinity });
      rl.on('line', (line) => this.onLine(stream, line));
    }
    const closed = new Promise<ExitStatus>((resolve) => {
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    this.exited = closed.then((s) => {
      this.status = s;
      return s;
    });
    // A spawn error (ENOENT for `ip`) is reported through 'close' as well; keep it from being unhandled.
    child.on('error', () => {});
  }

  /**
   * Starts `cmd args` inside namespace `ns` with stdin, stdout and stderr as pipes.
   *
   * @param host the host's role, only for messages.
   */
  static start(host: string, ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): HostProcess {
    const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    return new HostProcess(host, formatCommand(cmd, args), child);
  }

  /** Its exit status, or undefined while it runs. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** Everything it wrote to stderr so far. */
  get stderr(): string {
    return this.stderrLines.join('\n');
  }

  private onLine(stream: 'stdout' | 'stderr', line: string): void {
    (stream === 'stdout' ? this.stdoutLines : this.stderrLines).push(line);
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.stream === stream && w.test(line)) w.resolve(line);
      else still.push(w);
    }
    this.waiters = still;
  }

  /**
   * Waits for a line on stdout (or stderr) that matches, looking first at the
   * lines already seen.
   *
   * @throws TestbedError `FTCP_E2E_TIMEOUT` after `timeoutMs`, or
   *   `FTCP_E2E_EXITED` if the process ends first; both quote its stderr.
   */
  waitForLine(pred: LinePredicate, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
    const test = asTest(pred);
    const seen = (stream === 'stdout' ? this.stdoutLines : this.stderrLines).find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      let done = false;
      const finish = (f: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        f();
      };
      const waiter: Waiter = { stream, test, resolve: (l) => finish(() => resolve(l)) };
      this.waiters.push(waiter);
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new TestbedError(
                TestbedErrorCode.TIMEOUT,
                `\`${this.commandLine}\` on ${this.host}: no matching ${stream} line within ${timeoutMs} ms; stderr: ${this.stderr || '(empty)'}`,
              ),
            ),
          ),
        timeoutMs,
      );
      void this.exited.then((s) =>
        // Let readline deliver the last lines before deciding it never came.
        setImmediate(() =>
          finish(() =>
            reject(
              new TestbedError(
                TestbedErrorCode.EXITED,
                `\`${this.commandLine}\` on ${this.host} exited (code ${s.code}, signal ${s.signal}) before a matching ${stream} line; stderr: ${this.stderr || '(empty)'}`,
              ),
            ),
          ),
        ),
      );
    });
  }

  /**
   * Waits for the next stdout line that is a JSON object with `ev === event`
   * (the event protocol of tools/peer.ts), and returns it parsed.
   */
  async waitForEvent<T extends { ev: string } = { ev: string; [k: string]: unknown }>(event: string, timeoutMs: number): Promise<T> {
    const line = await this.waitForLine((l) => parseEvent(l)?.ev === event, timeoutMs);
    return JSON.parse(line) as T;
  }

  /** Every stdout line so far that is a JSON event, parsed. */
  events(): Array<{ ev: string; [k: string]: unknown }> {
    return this.stdoutLines.map(parseEvent).filter((e): e is { ev: string } => e !== undefined);
  }

  /** Writes one line to its stdin. */
  writeLine(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** Sends it a signal; no error if it is gone already. */
  signal(sig: NodeJS.Signals): void {
    if (this.status === undefined) signalPid(this.pid, sig);
  }

  /**
   * Sends `sig`, waits up to `timeoutMs` for it to exit, then SIGKILLs it and
   * waits again (bounded by the same limit).
   */
  async stop(sig: NodeJS.Signals = 'SIGTERM', timeoutMs = 3000): Promise<ExitStatus> {
    if (this.status) return this.status;
    this.signal(sig);
    const t = await Promise.race([this.exited, sleepValue(timeoutMs)]);
    if (t) return t;
    this.signal('SIGKILL');
    const k = await Promise.race([this.exited, sleepValue(timeoutMs)]);
    if (k) return k;
    throw new TestbedError(TestbedErrorCode.TIMEOUT, `\`${this.commandLine}\` on ${this.host} (pid ${this.pid}) did not exit after SIGKILL`);
  }
}

function sleepValue(ms: number): Promise<undefined> {
  return new Promise((r) => setTimeout(() => r(undefined), ms).unref());
}

function parseEvent(line: string): { ev: string; [k: string]: unknown } | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as unknown;
    if (typeof v === 'object' && v !== null && typeof (v as { ev?: unknown }).ev === 'string') return v as { ev: string };
  } catch {
    // Not JSON: an ordinary line.
  }
  return undefined;
}
