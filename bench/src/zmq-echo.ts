/**
 * The clean baseline of the buffer benchmark: a ROUTER that answers every
 * frame at once, run as its own process like the buffer, with the buffer's
 * socket options. With a reply size it answers with a frame of that many
 * bytes (the size of the buffer's acknowledgement), otherwise it echoes.
 *
 * Usage: node zmq-echo.js [endpoint] [replyBytes]
 */
import { Router } from 'zeromq';

/** The options StableBufferServer gives its ROUTER (src/server.ts): neither side of the comparison has other sockets. */
const ROUTER_OPTIONS = {
  mandatory: true,
  linger: 0,
  maxMessageSize: 8 * 1024 * 1024,
  sendHighWaterMark: 100_000,
  receiveHighWaterMark: 100_000,
} as const;

const sock = new Router(ROUTER_OPTIONS);
await sock.bind(process.argv[2] ?? 'tcp://127.0.0.1:0');
const replyBytes = process.argv[3] === undefined ? null : Number(process.argv[3]);
const reply = replyBytes === null ? null : Buffer.alloc(replyBytes, 1);
process.stdout.write(JSON.stringify({ event: 'ready', endpoint: sock.lastEndpoint }) + '\n');
process.once('SIGTERM', () => sock.close());
try {
  for await (const [id, frame] of sock) await sock.send([id!, reply ?? frame!]);
} catch {
  // The socket closed under SIGTERM.
}
