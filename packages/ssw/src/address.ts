/**
 * Adding and removing the service address (DESIGN, "Failover, in order"
 * step 5) through rtnetlink from this process: a takeover waits on it, and
 * running `ip` costs an exec (7 ms on an idle host here, 20 ms under load)
 * where one netlink round trip costs well under one. The message is built in
 * `wire/rtnetlink.ts`; the addon only sends it and returns the ack.
 */
import { constants } from 'node:os';
import { FtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from './errors.js';
import { loadNative, nativeError } from './native.js';
import { ackErrno, addressMessage } from './wire/rtnetlink.js';
import { parseIpv4Address } from './wire/ipv4.js';

let nextSeq = 1;

function change(op: 'add' | 'delete', ifname: string, ipv4: string): void {
  const addr = parseIpv4Address(ipv4);
  if (addr === undefined) throw new FtcpError(SswErrorCode.BAD_ADDRESS, `${JSON.stringify(ipv4)} is not an IPv4 address`);
  const native = loadNative();
  let index: number;
  try {
    index = native.linkAddress(ifname).index;
  } catch (err) {
    throw nativeError(SswErrorCode.NO_SUCH_DEVICE, `no device ${ifname} in this network namespace`, err);
  }
  const seq = nextSeq++;
  let reply: Buffer;
  try {
    reply = native.routeRequest(addressMessage(op, index, addr, seq));
  } catch (err) {
    throw nativeError(SswErrorCode.NETLINK, `cannot ${op} ${ipv4} on ${ifname}`, err);
  }
  const errno = ackErrno(reply, seq);
  if (errno === undefined) throw new FtcpError(SswErrorCode.NETLINK, `cannot ${op} ${ipv4} on ${ifname}: the kernel's answer is not an acknowledgement`);
  // Removing an address that is not there leaves what was asked for.
  if (errno === 0 || (op === 'delete' && errno === constants.errno.EADDRNOTAVAIL)) return;
  const e = new FtcpError(SswErrorCode.NETLINK, `cannot ${op} ${ipv4} on ${ifname}: errno ${errno}${errno === constants.errno.EPERM ? ' (run as root: it needs CAP_NET_ADMIN)' : ''}`);
  throw Object.assign(e, { errno });
}

/**
 * Adds `ipv4`/32 to device `ifname` in this network namespace, or keeps it
 * if it is there (`ip addr replace`). Needs CAP_NET_ADMIN.
 * @throws FtcpError `FTCP_ERR_BAD_ADDRESS`, `FTCP_ERR_NO_SUCH_DEVICE`,
 *   `FTCP_ERR_NETLINK` (with `errno`), `FTCP_ERR_NATIVE_UNAVAILABLE`.
 */
export function addLocalAddress(ifname: string, ipv4: string): void {
  change('add', ifname, ipv4);
}

/** Removes `ipv4`/32 from device `ifname`; nothing to do if it is not there. Throws as {@link addLocalAddress}. */
export function removeLocalAddress(ifname: string, ipv4: string): void {
  change('delete', ifname, ipv4);
}
