import { expect } from 'chai';
import { ErrorCode } from '../src/errors.js';
import { LockOrder } from '../src/lock-order.js';
import { decodeLockPosition, encodeLockPosition } from '../src/protocol.js';

describe('LockOrder', () => {
  const D = 7n;

  it('lets position 1 run at once and each later one when every position below it was performed, in whatever order they were', async () => {
    const order = new LockOrder();
    const ran: number[] = [];
    const waits = [4, 2, 3].map((p) => order.due(D, p).then(() => ran.push(p)));
    await order.due(D, 1);
    order.performed(D, 3);
    await new Promise((r) => setImmediate(r));
    expect(ran).to.deep.equal([]);
    order.performed(D, 1);
    await new Promise((r) => setImmediate(r));
    expect(ran).to.deep.equal([2]);
    order.performed(D, 2);
    await Promise.all(waits);
    expect(ran.sort()).to.deep.equal([2, 3, 4]);
  });

  it('keeps domains apart', async () => {
    const order = new LockOrder();
    let other = false;
    void order.due(D, 2).then(() => (other = true));
    order.performed(8n, 1);
    await new Promise((r) => setImmediate(r));
    expect(other).to.equal(false);
  });

  it('skips positions declared lost and lets their successors run', async () => {
    const order = new LockOrder();
    const waiting = order.due(D, 5);
    const [blocked] = order.blocked();
    expect([blocked!.domain, blocked!.done, blocked!.lowestWaiting]).to.deep.equal([D, 0, 5]);
    order.skipBelow(D, 5);
    await waiting;
    expect(order.blocked()).to.deep.equal([]);
  });

  it('rejects a wait that is aborted, and a second wait for the same position', async () => {
    const order = new LockOrder();
    const ac = new AbortController();
    const waiting = order.due(D, 3, ac.signal);
    ac.abort();
    await waiting.then(() => expect.fail('resolved'), (err: unknown) => expect(err).to.have.property('code', ErrorCode.CLOSED));
    void order.due(D, 4);
    await order.due(D, 4).then(() => expect.fail('resolved'), (err: unknown) => expect(err).to.have.property('code', ErrorCode.CONFLICT));
  });
});

describe('lock positions', () => {
  it('round-trip through a LOCK record\'s payload', () => {
    const p = { domain: 0xfedcba9876543210n, attempt: 3, grant: 9 };
    expect(decodeLockPosition(encodeLockPosition(p))).to.deep.equal(p);
  });

  for (const [what, payload] of [
    ['a payload of another size', Buffer.alloc(16)],
    ['attempt 0', encodeLockPosition({ domain: 1n, attempt: 1, grant: 0 }).fill(0, 8, 16)],
    ['a grant not after its attempt', encodeLockPosition({ domain: 1n, attempt: 4, grant: 5 }).fill(3, 16, 17)],
  ] as const) {
    it(`refuses ${what} with FTCP_ERR_MALFORMED_FRAME`, () => {
      expect(() => decodeLockPosition(payload)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
    });
  }
});
