/**
 * Child process of the address test: runs inside the test's network
 * namespace (`ip netns exec`), since rtnetlink changes the namespace of its
 * socket. argv: add|delete ifname ipv4. Prints one JSON line: `{ "ok": true }`
 * or `{ "code": ... }`.
 */
import { addLocalAddress, removeLocalAddress } from '../../src/address.js';

const [op, ifname, ipv4] = process.argv.slice(2);
try {
  (op === 'add' ? addLocalAddress : removeLocalAddress)(ifname ?? '', ipv4 ?? '');
  process.stdout.write(JSON.stringify({ ok: true }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ code: (err as { code?: string }).code ?? String(err), message: String(err) }) + '\n');
  process.exitCode = 1;
}
