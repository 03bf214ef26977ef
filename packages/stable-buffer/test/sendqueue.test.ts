import { expect } from 'chai';
import type { Dealer } from 'zeromq';
import { decodeFrame, encodeFrame, MAX_FRAME_SIZE, splitFrames } from '../src/protocol/messages.js';
import { SendQueue } from '../src/sendqueue.js';

/** A DEALER stand-in that records what is sent and settles each send when told. */
class FakeSocket {
  readonly sent: Buffer[] = [];
  private readonly pending: (() => void)[] = [];
  failNext = false;

  send(msg: Buffer): Promise<void> {
    this.sent.push(msg);
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('EHOSTUNREACH'));
    }
    return new Promise((resolve) => this.pending.push(resolve));
  }

  /** Completes every send in flight. */
  settle(): void {
    for (const r of this.pending.splice(0)) r();
  }

  /** Request ids carried by each message sent, MULTI frames unpacked. */
  reqIds(): number[][] {
    return this.sent.map((m) => splitFrames(m).map((f) => decodeFrame(f).reqId));
  }
}

const ping = (reqId: number) => encodeFrame({ kind: 'ping' }, reqId);
const tick = () => new Promise<void>((r) => queueMicrotask(r));
const turn = () => new Promise<void>((r) => setImmediate(r));

describe('SendQueue', () => {
  let socket: FakeSocket;
  let q: SendQueue;

  beforeEach(() => {
    socket = new FakeSocket();
    q = new SendQueue(socket as unknown as Dealer);
  });

  it('hands a lone frame to the socket at once, within the push', () => {
    q.push(ping(1));
    expect(socket.reqIds()).to.deep.equal([[1]]);
  });

  it('sends a frame pushed after a lone frame was sent at once too, without waiting for the turn to end', async () => {
    q.push(ping(1));
    socket.settle();
    await tick();
    await tick();
    q.push(ping(2));
    expect(socket.reqIds()).to.deep.equal([[1], [2]]);
  });

  it('coalesces frames pushed while the first was in flight, and the rest of that turn, into one MULTI in order', async () => {
    q.push(ping(1));
    q.push(ping(2));
    q.push(ping(3));
    socket.settle();
    await tick();
    await tick();
    q.push(ping(4));
    expect(socket.reqIds()).to.deep.equal([[1]]);
    await turn();
    expect(socket.reqIds()).to.deep.equal([[1], [2, 3, 4]]);
    expect({ messages: q.messages, frames: q.frames }).to.deep.equal({ messages: 2, frames: 4 });
  });

  it('never batches frames into a message larger than the receiver accepts: a large frame after small ones goes alone', async () => {
    const segment = (reqId: number, bytes: number) =>
      encodeFrame({ kind: 'segment', epoch: 1, connId: 1, offset: 0, flags: 0, payload: Buffer.alloc(bytes) }, reqId);
    q.push(ping(1));
    q.push(segment(2, 900 * 1024));
    q.push(segment(3, MAX_FRAME_SIZE - 1024));
    q.push(ping(4));
    for (let i = 0; i < 10; i++) {
      socket.settle();
      await turn();
    }
    expect(socket.reqIds().flat()).to.deep.equal([1, 2, 3, 4]);
    expect(Math.max(...socket.sent.map((m) => m.length))).to.be.at.most(MAX_FRAME_SIZE);
  });

  it('counts a failed send and still sends what comes next', async () => {
    socket.failNext = true;
    q.push(ping(1));
    await tick();
    await tick();
    q.push(ping(2));
    expect(q.failures).to.equal(1);
    expect(socket.reqIds()).to.deep.equal([[1], [2]]);
  });

  it('sends nothing once closed', async () => {
    q.push(ping(1));
    q.push(ping(2));
    q.close();
    socket.settle();
    await turn();
    q.push(ping(3));
    expect(socket.reqIds()).to.deep.equal([[1]]);
  });
});
