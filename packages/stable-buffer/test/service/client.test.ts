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

  it('keeps a write refused for a full log and offers it again until it is taken; rejects one refused for good', async () => {
    let fullFor = 2;
    void serve((m) => {
      if (m.kind === 'hello') return { kind: 'hello-ok', epoch: 1, headLsn: 0 };
      if (m.kind === 'segment') return fullFor-- > 0 ? { kind: 'error', code: ErrorCode.CAPACITY, message: 'log full' } : { kind: 'ack-segment', connId: 3, stableOffset: 1, stableSeq: 2 };
      if (m.kind === 'call') return { kind: 'error', code: ErrorCode.CONFLICT, message: 'call 1 is logged with other data' };
      return { kind: 'error', code: ErrorCode.STALE_EPOCH, message: 'epoch 2 belongs to backup' };
    });
    const events: unknown[] = [];
    client.on('write-refused', (err) => events.push(err));
    await client.attachAsWriter();
    const t0 = performance.now();
    expect(await client.writeSegment({ connId: 3, offset: 0, flags: 0, payload: Buffer.from('x') })).to.deep.equal({ stableOffset: 1, stableSeq: 2 });
    expect(performance.now() - t0, 'two retries, a second apart').to.be.greaterThan(1900);
    const conflict = await client.writeCall({ stream: 's', callNo: 1, data: Buffer.from('c') }).catch((err: unknown) => err);
    expect(isFtcpError(conflict, ErrorCode.CONFLICT), String(conflict)).to.equal(true);
    const fenced = await client.writeClose({ connId: 3, reason: 1 }).catch((err: unknown) => err);
    expect(isFtcpError(fenced, ErrorCode.STALE_EPOCH), String(fenced)).to.equal(true);
    // The full-log write counts once however often it was refused; the fenced one not at all.
    expect(client.writesRefused).to.equal(2);
    expect(events.map((e) => (e as { code: string }).code)).to.deep.equal([ErrorCode.CAPACITY, ErrorCode.CAPACITY, ErrorCode.CONFLICT]);
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
