/**
 * ARP for IPv4 over Ethernet (RFC 826), just what a takeover needs: the
 * gratuitous ARP request that announces an address has moved (RFC 5227 2.3,
 * "ARP Announcement"). Pure: builds bytes.
 */
import { writeU16, writeU32 } from './bytes.js';

/** Byte offsets of an Ethernet II frame carrying an ARP packet, and sizes. */
export const ARP_FRAME = {
  DST_MAC: 0,
  SRC_MAC: 6,
  ETHERTYPE: 12,
  HTYPE: 14,
  PTYPE: 16,
  HLEN: 18,
  PLEN: 19,
  OPER: 20,
  SHA: 22,
  SPA: 28,
  THA: 32,
  TPA: 38,
  /** Header and ARP packet. */
  ARP_END: 42,
  /** The shortest Ethernet frame without its FCS (IEEE 802.3: 60 bytes). */
  MIN_FRAME: 60,
} as const;

/** EtherType of ARP. */
export const ETHERTYPE_ARP = 0x0806;
/** ARP hardware type Ethernet, and protocol type IPv4. */
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = 0x0800;
/** ARP operation: request. */
export const ARP_OP_REQUEST = 1;

/**
 * A gratuitous ARP request announcing that `addr` (IPv4, unsigned 32-bit)
 * is at `mac`: broadcast, sender and target protocol address both `addr`,
 * sender hardware address `mac`, target hardware address zero (RFC 5227
 * 2.3). A request rather than a reply: Linux takes a request whose sender
 * and target addresses agree as gratuitous (`arp_is_garp`) and overrides an
 * existing neighbour entry with it at once, and a bridge learns the port
 * of its source address. Padded with zeros to the 60-byte Ethernet minimum,
 * as a driver would.
 */
export function gratuitousArpFrame(mac: Uint8Array, addr: number): Buffer {
  if (mac.length !== 6) throw new RangeError(`an Ethernet address has 6 bytes, got ${mac.length}`);
  const f = Buffer.alloc(ARP_FRAME.MIN_FRAME);
  f.fill(0xff, ARP_FRAME.DST_MAC, ARP_FRAME.DST_MAC + 6);
  f.set(mac, ARP_FRAME.SRC_MAC);
  writeU16(f, ARP_FRAME.ETHERTYPE, ETHERTYPE_ARP);
  writeU16(f, ARP_FRAME.HTYPE, ARP_HTYPE_ETHERNET);
  writeU16(f, ARP_FRAME.PTYPE, ARP_PTYPE_IPV4);
  f[ARP_FRAME.HLEN] = 6;
  f[ARP_FRAME.PLEN] = 4;
  writeU16(f, ARP_FRAME.OPER, ARP_OP_REQUEST);
  f.set(mac, ARP_FRAME.SHA);
  writeU32(f, ARP_FRAME.SPA, addr);
  writeU32(f, ARP_FRAME.TPA, addr);
  return f;
}
