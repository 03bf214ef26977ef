/**
 * The heartbeat's thread (see heartbeat.ts): its own ZeroMQ connection to the
 * buffer, a hello as the epoch owner's heartbeat, and a pong for every probe,
 * while the main thread keeps beating. Nothing here waits on the main
 * thread's event loop; that is the point.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Dealer } from 'zeromq';
import { Role, decodeFrame, encodeFrame, splitFrames, type Frame } from './protocol/messages.js';
import { SendQueue } from './sendqueue.js';
import type { HeartbeatControl, HeartbeatWorkerData, HeartbeatWorkerEvent } from './heartbeat.js';

const data = workerData as HeartbeatWorkerData;
const beats = new Int32Array(data.beats);
const post = (ev: HeartbeatWorkerEvent): void => parentPort!.postMessage(ev);

const socket = new Dealer({ linger: 0, reconnectInterval: 20, reconnectMaxInterval: 200 });
if (data.curve) {
  socket.curveServerKey = data.curve.serverPublicKey;
  socket.curvePublicKey = data.curve.publicKey;
  socket.curveSecretKey = data.curve.secretKey;
}
// Observed before connecting: zeromq.js watches events only from the first
// access, and the first connect is an event like any other.
const events = socket.events;
socket.connect(data.endpoint);
// One send at a time per socket: hellos and pongs share the queue.
const out = new SendQueue(socket);

let lastBeat = Atomics.load(beats, 0);
let lastBeatSeenAt = performance.now();
let stalled = false;
let helloReqId = 1;
/** The epoch to vouch for; 0 until the node is the writer. */
let epoch = data.epoch;

/** True while the main thread has beaten within the stall limit. */
function mainThreadAlive(): boolean {
  const beat = Atomics.load(beats, 0);
  const now = performance.now();
  if (beat !== lastBeat) {
    lastBeat = beat;
    lastBeatSeenAt = now;
  }
  const alive = now - lastBeatSeenAt <= data.stallLimitMs;
  if (alive !== !stalled) {
    stalled = !alive;
    post({ kind: alive ? 'resumed' : 'stalled', ms: Math.round(now - lastBeatSeenAt) });
  }
  return alive;
}

function hello(): void {
  if (epoch === 0) return;
  helloReqId = helloReqId >= 0x7fffffff ? 1 : helloReqId + 1;
  out.push(encodeFrame({ kind: 'hello', epoch, role: Role.HEARTBEAT, node: data.node }, helloReqId));
}

async function watchConnects(): Promise<void> {
  try {
    // Every (re)connect, a restarted buffer included, needs a hello: the buffer
    // knows a heartbeat only by the connection it said hello on.
    for await (const ev of events) {
      if (ev.type === 'connect') {
        post({ kind: 'connected' });
        hello();
      } else if (ev.type === 'end') break;
    }
  } catch {
    // The socket closed.
  }
}

async function answerProbes(): Promise<void> {
  try {
    for (;;) {
      const [frame] = await socket.receive();
      if (!frame) continue;
      let decoded: Frame[];
      try {
        decoded = splitFrames(frame).map((f) => decodeFrame(f));
      } catch (err) {
        post({ kind: 'bad-frame', message: String(err) });
        continue;
      }
      for (const { reqId, msg } of decoded) {
        if (msg.kind === 'ping') {
          if (mainThreadAlive()) out.push(encodeFrame({ kind: 'pong' }, reqId));
        } else if (msg.kind === 'hello-ok') {
          post({ kind: 'attached', epoch: msg.epoch });
        } else if (msg.kind === 'error') {
          // A stale epoch: another node was promoted. Nothing this thread says counts any more.
          post({ kind: 'refused', code: msg.code, message: msg.message });
        }
      }
    }
  } catch (err) {
    if (!socket.closed) post({ kind: 'failed', message: String(err) });
  }
}

parentPort!.on('message', (m: HeartbeatControl) => {
  if (m.kind === 'attach') {
    epoch = m.epoch;
    hello();
  } else if (m.kind === 'stop') {
    out.close();
    socket.close();
    parentPort!.close();
  }
});

void watchConnects();
void answerProbes();
