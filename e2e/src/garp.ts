/**
 * Gratuitous ARP: how a host that just took the service address tells the
 * LAN (FT-TCP 3.9; DESIGN.md "Failover, in order", step 5). Without it the
 * client keeps sending to the dead primary's MAC until its neighbour entry
 * goes stale, which takes seconds.
 *
 * How it is sent, and why this way (measured on kernel 6.18):
 * - Adding an address sends nothing, whatever `arp_notify` says.
 * - `net.ipv4.conf.<dev>.arp_notify=1` sends one request per address when
 *   the device comes up or changes its MAC; using it would mean flapping the
 *   LAN interface, which drops routes and would disturb a real takeover.
 * - `arping` (iputils-arping or the separate `arping` package) is not
 *   installed here, and the two packages take different flags.
 * - Node has no AF_PACKET socket. So a few lines of Python (python3 is
 *   already a dependency of the e2e tests, see scripts/setup.sh) open a raw
 *   AF_PACKET socket on the device and broadcast an ARP request whose sender
 *   and target address are both the VIP. That is the form Linux treats as a
 *   gratuitous ARP (`arp_is_garp`): it updates an existing neighbour entry at
 *   once, skipping the `locktime` hold-down, and the bridge learns the new
 *   port from its source MAC. It costs about 50 ms of interpreter start-up.
 */
import { existsSync } from 'node:fs';
import { nsExec } from './netns.js';

// argv: device, IPv4 address, count, interval in ms.
const GARP_PY = `
import socket, struct, sys, time
dev, addr, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) / 1000
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
mac = s.getsockname()[4]
ip = socket.inet_aton(addr)
arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + ip + bytes(6) + ip
frame = b'\\xff' * 6 + mac + b'\\x08\\x06' + arp
frame += bytes(60 - len(frame))
for i in range(count):
    if i:
        time.sleep(interval)
    s.send(frame)
`;

/** Options of {@link sendGratuitousArp}. */
export interface GarpOptions {
  /** How many announcements; default 3 (a lost one must not cost seconds). */
  readonly count?: number;
  /** Milliseconds between announcements; default 10. */
  readonly intervalMs?: number;
}

/** The Python interpreter to use; Debian's own skips pyenv's slower shim. */
function python(): string {
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/**
 * Broadcasts gratuitous ARP requests for `addr` from `dev` inside `ns`, with
 * the device's own MAC as sender. Resolves when the last one is sent.
 */
export async function sendGratuitousArp(ns: string, dev: string, addr: string, opts: GarpOptions = {}): Promise<void> {
  const count = Math.max(1, Math.floor(opts.count ?? 3));
  const interval = Math.max(0, opts.intervalMs ?? 10);
  await nsExec(ns, python(), ['-c', GARP_PY, dev, addr, String(count), String(interval)]);
}
