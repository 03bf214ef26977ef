/**
 * What the client tools share: `--key value` arguments (and bare boolean
 * flags) read strictly, and one JSON event per stdout line. A bad argument
 * exits 2 with the tool's name on stderr, as each tool's usage says.
 */

/** One event line on stdout: `{ev, t, ...fields}`, `t` in ms since the epoch. */
export function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

export interface ToolArgs {
  get(key: string): string | undefined;
  has(key: string): boolean;
  /** A bare `--name` given among `booleans`. */
  flag(name: string): boolean;
  /** The value of `--key`, or exit 2 saying it is required. */
  required(key: string): string;
  /** A non-negative number: `--key`'s value, else `dflt`; exit 2 when missing without a default or not a number. */
  num(key: string, dflt?: number): number;
  /** Exit 2 with `tool: message` on stderr. */
  fail(message: string): never;
}

/** Reads `argv` (without node and the script) as `--key value` pairs and the bare flags in `booleans`. */
export function toolArgs(tool: string, argv: readonly string[], booleans: readonly string[] = []): ToolArgs {
  const fail = (message: string): never => {
    process.stderr.write(`${tool}: ${message}\n`);
    process.exit(2);
  };
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    if (!k.startsWith('--')) fail(`unexpected argument ${k}`);
    const name = k.slice(2);
    if (booleans.includes(name)) {
      flags.add(name);
      continue;
    }
    const v = argv[++i];
    if (v === undefined) fail(`${k} needs a value`);
    values.set(name, v!);
  }
  return {
    get: (key) => values.get(key),
    has: (key) => values.has(key),
    flag: (name) => flags.has(name),
    required: (key) => values.get(key) ?? fail(`--${key} is required`),
    num: (key, dflt) => {
      const v = values.get(key);
      if (v === undefined) return dflt ?? fail(`--${key} is required`);
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) fail(`--${key} must be a non-negative number, got ${v}`);
      return n;
    },
    fail,
  };
}

/**
 * How a client tool ends, once: a deadline that calls `onTimeout`, and
 * {@link finish}, which sets the exit code, destroys the socket, lets stdout
 * drain and then leaves even if a timer or the socket lingers.
 */
export class ToolEnd {
  private done = false;
  private readonly deadline: NodeJS.Timeout;

  constructor(timeoutMs: number, onTimeout: () => void) {
    this.deadline = setTimeout(onTimeout, timeoutMs);
  }

  get finished(): boolean {
    return this.done;
  }

  /** Ends with `code`; `last` runs first (once), e.g. to write a trace. Later calls do nothing. */
  finish(code: number, sock: { destroy(): void }, last?: () => void): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.deadline);
    last?.();
    process.exitCode = code;
    sock.destroy();
    setTimeout(() => process.exit(code), 50).unref();
  }
}
