/**
 * rtnetlink (netlink(7), rtnetlink(7)), just what a takeover needs: the
 * request that adds or removes one IPv4 address on a device, and the
 * kernel's acknowledgement. Pure: builds and reads bytes. Netlink headers are
 * in host byte order (little-endian on every machine we run on); the address
 * itself is in network order.
 */

/** Message types (linux/rtnetlink.h) and the netlink error/ack type. */
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const NLMSG_ERROR = 2;

/** Header flags (linux/netlink.h). */
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_CREATE = 0x400;

/** ifaddrmsg attributes (linux/if_addr.h). */
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;

const AF_INET = 2;
const NLMSG_HDRLEN = 16;
const IFADDRMSG_LEN = 8;
const RTA_IPV4_LEN = 8;

/**
 * RTM_NEWADDR (`add`: create or replace, like `ip addr replace`) or
 * RTM_DELADDR (`delete`) for `addr` (unsigned 32-bit) on device `ifindex`,
 * scope global, asking for an acknowledgement. An add is a /32 (IFA_LOCAL
 * and IFA_ADDRESS); a delete names only IFA_LOCAL, so that it removes the
 * address whatever prefix an administrator gave it (the kernel matches the
 * prefix only against an IFA_ADDRESS).
 */
export function addressMessage(op: 'add' | 'delete', ifindex: number, addr: number, seq: number): Buffer {
  const attrs = op === 'add' ? [IFA_LOCAL, IFA_ADDRESS] : [IFA_LOCAL];
  const len = NLMSG_HDRLEN + IFADDRMSG_LEN + attrs.length * RTA_IPV4_LEN;
  const b = Buffer.alloc(len);
  let o = 0;
  b.writeUInt32LE(len, o);
  b.writeUInt16LE(op === 'add' ? RTM_NEWADDR : RTM_DELADDR, o + 4);
  b.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | (op === 'add' ? NLM_F_CREATE | NLM_F_REPLACE : 0), o + 6);
  b.writeUInt32LE(seq >>> 0, o + 8);
  b.writeUInt32LE(0, o + 12); // to the kernel
  o = NLMSG_HDRLEN;
  b[o] = AF_INET;
  b[o + 1] = 32; // prefix length
  b[o + 2] = 0; // flags
  b[o + 3] = 0; // RT_SCOPE_UNIVERSE
  b.writeUInt32LE(ifindex >>> 0, o + 4);
  o += IFADDRMSG_LEN;
  for (const type of attrs) {
    b.writeUInt16LE(RTA_IPV4_LEN, o);
    b.writeUInt16LE(type, o + 2);
    b.writeUInt32BE(addr >>> 0, o + 4);
    o += RTA_IPV4_LEN;
  }
  return b;
}

/**
 * The errno the kernel's acknowledgement of request `seq` carries: 0 for
 * success. Undefined when `reply` is not an NLMSG_ERROR for that request.
 */
export function ackErrno(reply: Uint8Array, seq: number): number | undefined {
  const b = Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength);
  if (b.length < NLMSG_HDRLEN + 4) return undefined;
  const len = b.readUInt32LE(0);
  if (len < NLMSG_HDRLEN + 4 || len > b.length) return undefined;
  if (b.readUInt16LE(4) !== NLMSG_ERROR || b.readUInt32LE(8) !== seq >>> 0) return undefined;
  return -b.readInt32LE(NLMSG_HDRLEN);
}
