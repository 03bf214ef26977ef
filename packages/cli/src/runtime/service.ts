/**
 * Parsing of a service address and the VIP's place on an interface: shared by
 * `ftcp primary` and `ftcp backup`.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { addLocalAddress, removeLocalAddress } from '@ftcp/ssw';
import { ErrorCode, FtcpError } from '@ftcp/stable-buffer';

const run = promisify(execFile);

/** A service's virtual address and port. */
export interface Service {
  vip: string;
  port: number;
}

/** Parses "10.0.0.100:6379". */
export function parseService(text: string): Service {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || port < 1 || port > 65535) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `--service ${JSON.stringify(text)} is not VIP:PORT with an IPv4 address, like 10.0.0.100:6379`);
  }
  return { vip: m[1]!, port };
}

async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { encoding: 'utf8' })).stdout;
  } catch (err) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `ip ${args.join(' ')} failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`, { cause: err });
  }
}

/** Removes the VIP from `iface` if it is there: a primary stepping down gives up the address. */
export async function dropVip(iface: string, vip: string): Promise<void> {
  removeLocalAddress(iface, vip);
}

/**
 * NFQUEUE hands user space at most 65531 bytes of a packet; GSO and GRO
 * packets on the service's interface must stay below that or the wrap has
 * to drop the ones it cannot rewrite whole.
 */
export async function capOffloadSizes(iface: string, bytes = 32768): Promise<void> {
  await ip(['link', 'set', 'dev', iface, 'gso_max_size', String(bytes), 'gro_max_size', String(bytes)]);
}

/**
 * Adds the VIP to `iface` as a /32 unless it is there: a promoted backup
 * takes the address. Through rtnetlink, not `ip`: a takeover waits on it.
 */
export async function addVip(iface: string, vip: string): Promise<void> {
  addLocalAddress(iface, vip);
}

/**
 * Lets the backup's copy of the server bind the VIP before this host owns it
 * (the "the server may bind the VIP before the backup owns it"):
 * `net.ipv4.ip_nonlocal_bind`, which is per network namespace.
 */
export function allowNonlocalBind(): void {
  const path = '/proc/sys/net/ipv4/ip_nonlocal_bind';
  try {
    if (readFileSync(path, 'utf8').trim() !== '1') writeFileSync(path, '1\n');
  } catch (err) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `cannot set net.ipv4.ip_nonlocal_bind=1 (${String(err)}): run as root`, { cause: err });
  }
}
