/**
 * Child process of the gratuitous ARP test: runs inside the sender's
 * network namespace (`ip netns exec`), since AF_PACKET sockets send on the
 * devices of their own namespace. argv: ifname ipv4 count. Prints one JSON
 * line: `{ "ok": true }` or `{ "code": ... }`.
 */
import { sendGratuitousArp } from '../../src/garp.js';

const [ifname, ipv4, count] = process.argv.slice(2);
sendGratuitousArp(ifname ?? '', ipv4 ?? '', { count: Number(count ?? 1), intervalMs: 10 }).then(
  () => process.stdout.write(JSON.stringify({ ok: true }) + '\n'),
  (err: unknown) => {
    process.stdout.write(JSON.stringify({ code: (err as { code?: string }).code ?? String(err), message: String(err) }) + '\n');
    process.exitCode = 1;
  },
);
