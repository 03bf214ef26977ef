import { expect } from 'chai';
import { getEventListeners } from 'node:events';
import { ErrorCode, isFtcpError } from '../../src/errors.js';
import { CallWriter, ReplicaFeed } from '../../src/replica-feed.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { StableBufferClient } from '../../src/client.js';
import { Harness, conn, until } from './helpers.js';

/** A full garbage collection, without running the whole suite under --expose-gc. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('ReplicaFeed', function () {
  this.timeout(20_000);
  let h: Harness;
  afterEach(async () => h?.stop());

  async function setup(maxHeldBytes?: number) {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const p = h.client('primary');
    await p.attachAsWriter();
    const b = h.client('backup');
    const feed = new ReplicaFeed(b, b.subscribe({ mode: 'hot', window: 64 }), maxHeldBytes === undefined ? {} : { maxHeldBytes });
    return { p, b, feed, writer: new CallWriter(p) };
  }

  it('hands a replica the primary\'s call records in order, waiting for the ones not logged yet', async () => {
    const { feed, writer } = await setup();
    await writer.append('p1', 1, Buffer.from('one'));
    const later = feed.read('p1', 2);
    expect((await feed.read('p1', 1)).toString()).to.equal('one');
    let done = false;
    void later.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done, 'a replica ahead of the log waits').to.equal(false);
    await writer.append('p1', 2, Buffer.from('two'));
    expect((await later).toString()).to.equal('two');
    await feed.close();
  });

  it('sends a burst of calls as a few batch records, resolving each append once stable', async () => {
    const { feed, writer } = await setup();
    const appends: Promise<void>[] = [];
    for (let i = 1; i <= 3000; i++) appends.push(writer.append(i % 2 ? 'odd' : 'even', Math.ceil(i / 2), Buffer.from(String(i))));
    await Promise.all(appends);
    expect(writer.callsSent).to.equal(3000);
    expect(writer.batchesSent).to.be.at.most(4); // per stream, at most 1024 calls a batch
    for (let n = 1; n <= 1500; n++) {
      expect((await feed.read('odd', n)).toString()).to.equal(String(2 * n - 1));
      expect((await feed.read('even', n)).toString()).to.equal(String(2 * n));
    }
    await feed.close();
  });

  it('counts the log it fetched: records, call bytes, segment bytes, and client bytes read again', async () => {
    const { p, feed, writer } = await setup();
    await writer.append('p1', 1, Buffer.from('abc'));
    await writer.append('p1', 2, Buffer.from('de'));
    await p.writeConn(conn(4));
    await p.writeSegment({ connId: 4, offset: 0, flags: 0, payload: Buffer.from('hello') });
    await p.writeSegment({ connId: 4, offset: 3, flags: 0, payload: Buffer.from('loworld') });
    expect((await feed.read('p1', 2)).toString()).to.equal('de');
    await until(() => (feed.connection(4)?.coverage.contiguousEnd ?? 0) === 10, 5000, 'the segments in the feed');
    expect(feed.fetched.callBytes).to.equal(5);
    // As logged: the retransmitted overlap counts, it was fetched twice.
    expect(feed.fetched.segmentBytes).to.equal(12);
    expect(feed.fetched.records).to.be.at.least(4);
    expect(feed.fetched.instreamBytes).to.equal(0);
    expect((await feed.readInstream(4, 0, 10)).toString()).to.equal('helloworld');
    expect(feed.fetched.instreamBytes).to.equal(10);
    await feed.close();
  });

  it('reads instream bytes once they are stable, across a hole filled later', async () => {
    const { p, feed } = await setup();
    await p.writeConn(conn(3));
    await p.writeSegment({ connId: 3, offset: 5, flags: 0, payload: Buffer.from('world') });
    const read = feed.readInstream(3, 0, 10);
    await new Promise((r) => setTimeout(r, 50));
    await p.writeSegment({ connId: 3, offset: 0, flags: 0, payload: Buffer.from('hello') });
    expect((await read).toString()).to.equal('helloworld');
    await feed.close();
  });

  it('serves a replica\'s small reads of a connection from one buffer request per megabyte', async () => {
    const { p, feed } = await setup();
    await p.writeConn(conn(5));
    const all = Buffer.alloc(600_000);
    for (let i = 0; i < all.length; i++) all[i] = (i * 31 + (i >> 9)) & 0xff;
    for (let at = 0; at < all.length; at += 50_000) await p.writeSegment({ connId: 5, offset: at, flags: 0, payload: all.subarray(at, at + 50_000) });
    await until(() => (feed.connection(5)?.coverage.contiguousEnd ?? 0) === all.length, 5000, "the segments in the feed");
    const before = h.server.counters.framesIn;
    const pieces: Buffer[] = [];
    for (let at = 0; at < all.length; at += 4088) pieces.push(await feed.readInstream(5, at, Math.min(4088, all.length - at)));
    expect(Buffer.concat(pieces).equals(all)).to.equal(true);
    // 147 reads of 4088 bytes: one request fetched them all (plus the feed's own consumed notes).
    const requests = h.server.counters.framesIn - before;
    expect(requests).to.be.at.most(3);
    await feed.close();
  });

  it('finds a connection by its client\'s address, waiting for the record to arrive', async () => {
    const { p, feed } = await setup();
    const read = feed.readClientBytes({ address: '10.0.0.1', port: 40007 }, 0, 4);
    await new Promise((r) => setTimeout(r, 30));
    await p.writeConn(conn(7)); // client 10.0.0.1:40007
    await p.writeSegment({ connId: 7, offset: 0, flags: 0, payload: Buffer.from('ping') });
    expect((await read).toString()).to.equal('ping');
    await feed.close();
  });

  it('leaves no abort listener on a long-lived signal once its waits have ended', async () => {
    const { p, feed, writer } = await setup();
    const life = new AbortController();
    // A replica's reads all share its connection's signal: each one that had to wait must take its listener with it.
    for (let n = 1; n <= 20; n++) {
      const read = feed.read('s', n, life.signal);
      await writer.append('s', n, Buffer.from(String(n)));
      await read;
    }
    await p.writeConn(conn(9));
    for (let n = 0; n < 20; n++) {
      const read = feed.readInstream(9, n, 1, life.signal);
      await p.writeSegment({ connId: 9, offset: n, flags: 0, payload: Buffer.from([n]) });
      await read;
    }
    const byPeer = feed.readClientBytes({ address: '10.0.0.1', port: 40011 }, 0, 1, life.signal);
    await new Promise((r) => setTimeout(r, 20));
    await p.writeConn(conn(11));
    await p.writeSegment({ connId: 11, offset: 0, flags: 0, payload: Buffer.from('x') });
    await byPeer;
    expect(getEventListeners(life.signal, 'abort')).to.have.length(0);
    expect(feed.listenerCount('end')).to.equal(0);
    await feed.close();
  });

  it('refuses to wait for bytes past the client\'s FIN', async () => {
    const { p, feed } = await setup();
    await p.writeConn(conn(4));
    await p.writeSegment({ connId: 4, offset: 0, flags: 0x01, payload: Buffer.from('bye') });
    await until(() => feed.connection(4)?.finOffset === 3, 2000, 'the FIN to reach the feed');
    try {
      await feed.readInstream(4, 0, 4);
      expect.fail('read past FIN');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.NOT_AVAILABLE)).to.equal(true);
    }
    await feed.close();
  });

  it('stops pulling while unread records exceed its memory bound, and resumes as they are read', async () => {
    const { feed, writer } = await setup(10_000);
    for (let i = 1; i <= 100; i++) await writer.append('s', i, Buffer.alloc(1000, i));
    await until(() => feed.held > 10_000, 2000, 'the feed to fill');
    await new Promise((r) => setTimeout(r, 100));
    expect(feed.held).to.be.lessThan(10_000 + 64 * 1000 + 1);
    for (let i = 1; i <= 100; i++) expect((await feed.read('s', i))[0]).to.equal(i);
    expect(feed.held).to.equal(0);
    await feed.close();
  });

  it('reports the primary\'s failure with the last positions', async () => {
    const { p, feed, writer } = await setup();
    await writer.append('p1', 1, Buffer.from('x'));
    const failed = new Promise((r) => feed.once('failed', r));
    p.close();
    await failed;
    expect(feed.failure?.positions.streams).to.deep.equal([{ stream: 'p1', lastCallNo: 1 }]);
    await feed.close();
  });

  it('rejects pending reads when closed', async () => {
    const { feed } = await setup();
    const r = feed.read('nothing', 1);
    await new Promise((res) => setTimeout(res, 20));
    await feed.close();
    try {
      await r;
      expect.fail('resolved');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.CLOSED)).to.equal(true);
    }
  });
});

describe('CallWriter', () => {
  /** A client that keeps each batch it is given and acknowledges it when the test says. */
  function fakeClient() {
    const sent: { stream: string; first: number; datas: Buffer[]; ack: (contiguous: number) => void }[] = [];
    const write = (stream: string, first: number, datas: Buffer[]): Promise<number> =>
      new Promise((ack) => sent.push({ stream, first, datas, ack }));
    const client = {
      writeCall: (r: { stream: string; callNo: number; data: Buffer }) => write(r.stream, r.callNo, [r.data]),
      writeCalls: (r: { stream: string; firstCallNo: number; datas: Buffer[] }) => write(r.stream, r.firstCallNo, r.datas),
    };
    return { client: client as unknown as StableBufferClient, sent };
  }
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('gives the calls of a stream that leave in one batch one promise, resolved when the buffer acknowledges the batch', async () => {
    const { client, sent } = fakeClient();
    const writer = new CallWriter(client);
    const batch = [1, 2, 3].map((n) => writer.append('s', n, Buffer.from(String(n))));
    expect(new Set(batch).size).to.equal(1);
    await turn();
    expect(sent.map((b) => [b.stream, b.first])).to.deep.equal([['s', 1]]);
    const next = writer.append('s', 4, Buffer.from('4'));
    expect(next).to.not.equal(batch[0]);
    let stable = false;
    void batch[0]!.then(() => (stable = true));
    await turn();
    expect(stable, 'not before the acknowledgement').to.equal(false);
    sent[0]!.ack(3);
    await batch[0];
    sent[1]!.ack(4);
    await next;
  });

  it('rejects every call of a batch when the buffer does not have all of them contiguously', async () => {
    const { client, sent } = fakeClient();
    const writer = new CallWriter(client);
    const batch = [1, 2, 3].map((n) => writer.append('s', n, Buffer.from(String(n))));
    await turn();
    sent[0]!.ack(2);
    for (const p of batch) {
      const err = await p.catch((e: unknown) => e);
      expect(isFtcpError(err, ErrorCode.CONFLICT)).to.equal(true);
    }
  });

  it('does not hold on to a batch\'s records while the buffer has yet to acknowledge it', async () => {
    // A real writer whose buffer then goes away: its writes stay pending.
    const h = await new Harness().start();
    try {
      const client = h.client('primary');
      await client.attachAsWriter();
      await h.server.close();
      const writer = new CallWriter(client);
      const refs: WeakRef<Buffer>[] = [];
      const pending = [1, 2, 3].map((n) => {
        const data = Buffer.alloc(64 * 1024, n);
        refs.push(new WeakRef(data));
        return writer.append('s', n, data);
      });
      pending.forEach((p) => p.catch(() => {}));
      await turn();
      await turn();
      collectGarbage();
      // The frame holds a copy of the bytes; nothing must keep the records themselves.
      expect(refs.map((r) => r.deref() === undefined)).to.deep.equal([true, true, true]);
      expect(client.unacknowledged).to.equal(1);
    } finally {
      await h.stop();
    }
  });
});
