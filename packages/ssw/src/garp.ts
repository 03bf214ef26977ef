/**
 * Taking the service address over (DESIGN, "Failover, in order" step 5):
 * after the VIP is added to a local device, a gratuitous ARP tells the LAN
 * that it now lives at this device's MAC. Without it, neighbours keep
 * sending to the dead primary's MAC until their entries expire. The frame is
 * built here (`wire/arp.ts`); the addon only resolves the device and sends
 * bytes.
 */
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { FtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from './errors.js';
import { loadNative, nativeError } from './native.js';
import type { NativeLinkAddress } from './native.js';
import { gratuitousArpFrame } from './wire/arp.js';
import { parseIpv4Address } from './wire/ipv4.js';

/** ARPHRD_ETHER: the only device type a gratuitous ARP is built for. */
const ARPHRD_ETHER = 1;

/** How often to announce. */
export interface GratuitousArpOptions {
  /**
   * Announcements to send, 1 to 100. Default 3: one frame can be lost, and
   * RFC 5227 2.3 announces twice; each one is cheap.
   */
  count?: number;
  /** Milliseconds between announcements, 0 to 10000. Default 100. */
  intervalMs?: number;
}

/**
 * Announce that `ipv4` is at device `ifname`'s own MAC with gratuitous ARP
 * requests (see `gratuitousArpFrame`), broadcast from `ifname` in the
 * current network namespace: the first at once, the rest `intervalMs` apart;
 * resolves once the last has been sent. Add the address to the device first.
 * Needs CAP_NET_RAW.
 *
 * @throws FtcpError `FTCP_ERR_NO_SUCH_DEVICE` when `ifname` does not exist
 *   (or vanishes meanwhile), `FTCP_ERR_BAD_ADDRESS` for an `ipv4` that is not
 *   a dotted quad, `FTCP_ERR_BAD_CONFIG` for a device that is not Ethernet or
 *   options out of range, `FTCP_ERR_RAW_SOCKET` (with `errno`) when the
 *   kernel refuses the socket or the send, `FTCP_ERR_NATIVE_UNAVAILABLE`
 *   when the addon is not built.
 */
export async function sendGratuitousArp(ifname: string, ipv4: string, opts: GratuitousArpOptions = {}): Promise<void> {
  const count = opts.count ?? 3;
  const intervalMs = opts.intervalMs ?? 100;
  if (!Number.isInteger(count) || count < 1 || count > 100) {
    throw new FtcpError(SswErrorCode.BAD_CONFIG, `count must be an integer in [1, 100], got ${count}`);
  }
  if (!Number.isInteger(intervalMs) || intervalMs < 0 || intervalMs > 10_000) {
    throw new FtcpError(SswErrorCode.BAD_CONFIG, `intervalMs must be an integer in [0, 10000], got ${intervalMs}`);
  }
  const addr = parseIpv4Address(ipv4);
  if (addr === undefined) throw new FtcpError(SswErrorCode.BAD_ADDRESS, `${JSON.stringify(ipv4)} is not an IPv4 address`);
  const native = loadNative();
  let link: NativeLinkAddress;
  try {
    link = native.linkAddress(ifname);
  } catch (err) {
    throw deviceError(ifname, 'look up', err);
  }
  if (link.hwType !== ARPHRD_ETHER) {
    throw new FtcpError(SswErrorCode.BAD_CONFIG, `device ${ifname} is not an Ethernet device (ARPHRD ${link.hwType}): gratuitous ARP needs one`);
  }
  const frame = gratuitousArpFrame(link.address, addr);
  for (let i = 0; i < count; i++) {
    if (i > 0 && intervalMs > 0) await sleep(intervalMs);
    try {
      native.sendFrame(link.index, frame);
    } catch (err) {
      throw deviceError(ifname, 'send a gratuitous ARP on', err);
    }
  }
}

/** ENODEV and ENXIO mean the device is not there; anything else is the socket's error. */
function deviceError(ifname: string, what: string, err: unknown): FtcpError {
  const errno = (err as { errno?: number }).errno;
  if (errno === constants.errno.ENODEV || errno === constants.errno.ENXIO) {
    return Object.assign(new FtcpError(SswErrorCode.NO_SUCH_DEVICE, `no network device named ${JSON.stringify(ifname)} in this network namespace`, { cause: err }), { errno });
  }
  return nativeError(SswErrorCode.RAW_SOCKET, `${what} device ${ifname}`, err);
}
