/**
 * Names and ports of test beds. Every namespace a test bed makes is called
 * `ftcp-<pid>-<4 hex>-<role>`: the pid is the owner, so a later run can tell a
 * leftover of a crashed run (owner dead) from a bed another live process is
 * using right now; the random part keeps two beds of one process apart.
 * Interface names need no tag at all: each lives inside a namespace of its
 * own bed (see testbed.ts), so short fixed names (`lan0`, `rep0`) never clash
 * and stay far below the kernel's 15-character limit.
 */
import { randomBytes } from 'node:crypto';

/** Every namespace of the test bed starts with this. */
export const NAME_PREFIX = 'ftcp-';

const NS_NAME = /^ftcp-(\d{1,7})-([0-9a-f]{4})-([a-z][a-z0-9]{0,15})$/;

/** The parts of a test bed's namespace name. */
export interface ParsedNsName {
  /** The pid of the process that made the namespace. */
  readonly pid: number;
  /** The bed's tag, `<pid>-<4 hex>`. */
  readonly tag: string;
  /** The host's role (`client`, `primary`, `backup`, `lan`, ...). */
  readonly role: string;
}

/** A fresh tag for one test bed of this process: `<pid>-<4 hex>`. */
export function newTag(pid: number = process.pid): string {
  return `${pid}-${randomBytes(2).toString('hex')}`;
}

/** The namespace name of `role` in the bed tagged `tag`. */
export function nsName(tag: string, role: string): string {
  return `${NAME_PREFIX}${tag}-${role}`;
}

/**
 * Parses a namespace name made by {@link nsName}.
 *
 * @returns undefined for any other name, including other `ftcp-` namespaces
 *   that some other tool made: those are never ours to remove.
 */
export function parseNsName(name: string): ParsedNsName | undefined {
  const m = NS_NAME.exec(name);
  if (!m) return undefined;
  const [, pid, hex, role] = m;
  if (pid === undefined || hex === undefined || role === undefined) return undefined;
  return { pid: Number(pid), tag: `${pid}-${hex}`, role };
}

// Ports come from one counter per process, starting at a random point of a
// range below the kernel's ephemeral range (32768-60999 by default) so that a
// listener never collides with a client's source port. Inside a bed's own
// namespaces any port is free; the counter keeps ports distinct anyway, so a
// capture filter on a port picks out one test's traffic.
const PORT_LO = 20_000;
const PORT_HI = 32_000;
let nextPortValue = PORT_LO + Math.floor(Math.random() * (PORT_HI - PORT_LO));

/** A port no other caller in this process has been given (until 12 000 calls wrap it). */
export function nextPort(): number {
  const p = nextPortValue;
  nextPortValue = nextPortValue + 1 >= PORT_HI ? PORT_LO : nextPortValue + 1;
  return p;
}
