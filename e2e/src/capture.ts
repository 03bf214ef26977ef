/**
 * Packet captures: tcpdump inside a host's namespace, writing a classic pcap
 * file that pcap.ts reads back.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestbedError, TestbedErrorCode } from './errors.js';
import { HostProcess } from './process.js';
import { readPcap, type PcapCapture } from './pcap.js';

/** Options of {@link startCapture}. */
export interface CaptureOptions {
  /** Interface inside the namespace; default `lan0`. */
  readonly iface?: string;
  /** A BPF filter expression, e.g. `tcp port 20001`; default everything. */
  readonly filter?: string;
  /** Where to write the pcap file; default a fresh file under the OS temp directory. */
  readonly file?: string;
  /** Bytes kept of each packet; default 256 (headers are all the reader needs). */
  readonly snaplen?: number;
  /** How long to wait for tcpdump to start listening, in ms; default 5000. */
  readonly startTimeoutMs?: number;
}

/** A running capture; see {@link startCapture}. */
export class Capture {
  /** The pcap file being written. */
  readonly file: string;
  /** The tcpdump process. */
  readonly process: HostProcess;
  private stopped: Promise<PcapCapture> | undefined;

  /** @internal use {@link startCapture}. */
  constructor(file: string, proc: HostProcess) {
    this.file = file;
    this.process = proc;
  }

  /**
   * Stops tcpdump (SIGINT, so it flushes and closes the file; SIGKILL if it
   * lingers) and reads the file. A capture whose tcpdump was already killed,
   * for instance by a crash of its host, is read as it is. Idempotent.
   *
   * @param settleMs wait this long before stopping so packets in flight land; default 50.
   */
  stop(settleMs = 50): Promise<PcapCapture> {
    this.stopped ??= (async () => {
      await new Promise((r) => setTimeout(r, settleMs));
      await this.process.stop('SIGINT', 3000);
      return readPcap(this.file);
    })();
    return this.stopped;
  }
}

/**
 * Starts tcpdump in namespace `ns` and resolves once it is listening, so
 * every packet after that is in the file. Runs as root (`-Z root`) so it can
 * write anywhere, in immediate mode so libpcap hands over each packet at once
 * (with TPACKET_V3 it otherwise holds up to a second of packets in its ring
 * block, and a stop loses them), and packet-buffered (`-U`) so a killed
 * tcpdump loses at most the record it was writing.
 *
 * @param host the host's role, only for messages.
 * @throws TestbedError `FTCP_E2E_TIMEOUT` or `FTCP_E2E_EXITED` (with tcpdump's
 *   stderr) if it does not start listening.
 */
export async function startCapture(host: string, ns: string, opts: CaptureOptions = {}): Promise<Capture> {
  const file = opts.file ?? join(mkdtempSync(join(tmpdir(), 'ftcp-cap-')), `${host}.pcap`);
  const args = ['-Z', 'root', '--immediate-mode', '-U', '-n', '-i', opts.iface ?? 'lan0', '-s', String(opts.snaplen ?? 256), '-w', file];
  if (opts.filter !== undefined && opts.filter.trim() !== '') args.push(opts.filter);
  const proc = HostProcess.start(host, ns, 'tcpdump', args);
  try {
    await proc.waitForLine(/listening on/, opts.startTimeoutMs ?? 5000, 'stderr');
  } catch (err) {
    await proc.stop('SIGKILL', 1000).catch(() => undefined);
    if (err instanceof TestbedError) throw err;
    throw new TestbedError(TestbedErrorCode.COMMAND_FAILED, `tcpdump on ${host} did not start: ${String(err)}`, { cause: err });
  }
  return new Capture(file, proc);
}
