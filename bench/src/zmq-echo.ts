/**
 * The clean baseline of the buffer benchmark: a ROUTER that sends every frame
 * straight back, run as its own process like the buffer.
 */
import { Router } from 'zeromq';

const sock = new Router({ linger: 0 });
await sock.bind(process.argv[2] ?? 'tcp://127.0.0.1:0');
process.stdout.write(JSON.stringify({ event: 'ready', endpoint: sock.lastEndpoint }) + '\n');
process.once('SIGTERM', () => sock.close());
for await (const [id, frame] of sock) await sock.send([id!, frame!]);
