/**
 * Rate limits with tbf, for the paper's asymmetric setups (FT-TCP 5, Table
 * 4: a 100 Mbit/s client link against a faster replica link). A limit is
 * egress-only, so a host's link is limited in both directions by one tbf on
 * the host's own interface (what it sends) and one on its bridge port in the
 * LAN namespace (what it receives).
 */
import { nsExec } from './netns.js';

/** A tbf limit on one interface. */
export interface TbfOptions {
  /** Rate in Mbit/s (10^6 bit/s). */
  readonly rateMbit: number;
  /**
   * Longest time a packet may wait in the queue, in milliseconds; sets the
   * queue's size. Default 50.
   */
  readonly latencyMs?: number;
}

/**
 * Bucket size in bytes: at least 64 KiB so that a GSO packet (up to 64 KiB on
 * a veth) passes whole (tbf segments larger ones, at a cost), and at least 2
 * ms of the rate so that timer granularity does not cap fast links.
 */
export function tbfBurstBytes(rateMbit: number): number {
  return Math.max(64 * 1024, Math.ceil((rateMbit * 1e6 * 0.002) / 8));
}

/** Installs (or replaces) a tbf root qdisc on `dev` inside `ns`. */
export async function setTbf(ns: string, dev: string, opts: TbfOptions): Promise<void> {
  if (!(opts.rateMbit > 0) || !Number.isFinite(opts.rateMbit)) throw new RangeError(`rate must be a positive number of Mbit/s, got ${opts.rateMbit}`);
  const rateKbit = Math.max(8, Math.round(opts.rateMbit * 1000));
  await nsExec(ns, 'tc', [
    'qdisc', 'replace', 'dev', dev, 'root', 'tbf',
    'rate', `${rateKbit}kbit`,
    'burst', String(tbfBurstBytes(opts.rateMbit)),
    'latency', `${opts.latencyMs ?? 50}ms`,
  ]);
}

/** Removes any root qdisc from `dev` inside `ns` (back to the default); no error if none. */
export async function clearQdisc(ns: string, dev: string): Promise<void> {
  try {
    await nsExec(ns, 'tc', ['qdisc', 'del', 'dev', dev, 'root']);
  } catch {
    // "Cannot delete qdisc with handle of zero": nothing was installed.
  }
}

/** The `tc -j qdisc show` entries of `dev` inside `ns`, for tests and debugging. */
export async function showQdisc(ns: string, dev: string): Promise<Array<{ kind: string; [k: string]: unknown }>> {
  const out = (await nsExec(ns, 'tc', ['-j', 'qdisc', 'show', 'dev', dev])).stdout;
  return JSON.parse(out) as Array<{ kind: string }>;
}
