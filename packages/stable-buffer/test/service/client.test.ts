import { expect } from 'chai';
import { Router } from 'zeromq';
import { StableBufferClient } from '../../src/client.js';
import { ErrorCode, isFtcpError } from '../../src/errors.js';
import { decodeFrame, encodeFrame, MAX_FRAME_SIZE, type Message } from '../../src/protocol/messages.js';

describe('StableBufferClient against a scripted buffer', function () {
  this.timeout(10_000);
  let router: Router;
  let client: StableBufferClient;

  /** Answers each request with whatever `reply` makes of it, under the request's id. */
  async function serve(reply: (msg: Message) => Message): Promise<void> {
    try {
      for await (const [id, frame] of router) {
        const { reqId, msg } = decodeFrame(frame!);
        await router.send([id!, encodeFrame(reply(msg), reqId)]);
      }
    } catch {
      // Closed.
    }
  }

  beforeEach(async () => {
    router = new Router({ linger: 0 });
    await router.bind('tcp://127.0.0.1:0');
    client = StableBufferClient.connect({ endpoint: router.lastEndpoint!, node: 'primary', requestTimeoutMs: 2000 });
  });
  afterEach(() => {
    client.close();
    router.close();
  });

  it('resolves a write with its own acknowledgement', async () => {
    void serve((m) => (m.kind === 'hello' ? { kind: 'hello-ok', epoch: 1, headLsn: 0 } : { kind: 'ack-segment', connId: 3, stableOffset: 7, stableSeq: 8 }));
    await client.attachAsWriter();
    expect(await client.writeSegment({ connId: 3, offset: 0, flags: 0, payload: Buffer.from('1234567') })).to.deep.equal({ stableOffset: 7, stableSeq: 8 });
    expect(client.unacknowledged).to.equal(0);
  });

  it('refuses a write too large for one frame at once, without sending it, and goes on writing', async () => {
    const seen: string[] = [];
    void serve((m) => {
      seen.push(m.kind);
      return m.kind === 'hello' ? { kind: 'hello-ok', epoch: 1, headLsn: 0 } : { kind: 'ack-segment', connId: 3, stableOffset: 1, stableSeq: 2 };
    });
    await client.attachAsWriter();
    try {
      await client.writeSegment({ connId: 3, offset: 0, flags: 0, payload: Buffer.alloc(MAX_FRAME_SIZE) });
      expect.fail('an oversized write was accepted');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.OVERSIZED_FRAME), String(err)).to.equal(true);
    }
    expect(client.unacknowledged).to.equal(0);
    expect(await client.writeSegment({ connId: 3, offset: 0, flags: 0, payload: Buffer.from('x') })).to.deep.equal({ stableOffset: 1, stableSeq: 2 });
    expect(seen).to.deep.equal(['hello', 'segment']);
  });

  it('rejects a request answered with another kind of reply as a malformed frame', async () => {
    void serve(() => ({ kind: 'pong' }));
    try {
      await client.attachAsWriter();
      expect.fail('a pong was taken for hello-ok');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.MALFORMED_FRAME), String(err)).to.equal(true);
    }
  });
});
