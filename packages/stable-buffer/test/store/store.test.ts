import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { ErrorCode, isFtcpError } from '../../src/errors.js';
import { BackupMode, SegFlag, decodeRecord, type ConnRecord } from '../../src/protocol/messages.js';
import { Store, type Durability, type Retention } from '../../src/store/store.js';
import { until } from '../service/helpers.js';

const connRec = (connId: number, clientIsn = 1000): ConnRecord => ({
  kind: 'conn', epoch: 1, connId, clientIp: 1, serverIp: 2, clientPort: 1000 + connId, serverPort: 80, clientIsn, serverIsn: 5,
  mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: false, clientTsval: 0, serverTsval: 0,
});

function seg(connId: number, offset: number, text: string, flags = 0) {
  return { kind: 'segment' as const, epoch: 1, connId, offset, flags, payload: Buffer.from(text) };
}

async function stable<T extends { stable: Promise<unknown> | null }>(r: T): Promise<T> {
  await r.stable;
  return r;
}

describe('Store', () => {
  let dir: string;
  let store: Store;
  // Collection tests run with `consumed` retention: under the default `all` nothing but client acks goes.
  const openStore = (durability: Durability = 'commit', maxLogBytes = 1 << 30, retain: Retention = 'consumed') => Store.open({ dataDir: dir, durability, maxLogBytes, retain });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-store-'));
    store = await openStore();
  });
  afterEach(async () => {
    await store.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a segment with the stable offset and the matching client sequence number', async () => {
    await stable(store.append(connRec(1, 0xfffffff0)));
    const r = await stable(store.append(seg(1, 0, 'abcdefghijklmnopqrstu')));
    expect(r.ack).to.deep.equal({ kind: 'ack-segment', connId: 1, stableOffset: 21, stableSeq: (0xfffffff0 + 1 + 21) >>> 0 });
  });

  it('does not advance stable-seq past a hole until the hole is filled', async () => {
    store.append(connRec(1));
    store.append(seg(1, 0, 'aaaa'));
    expect(store.append(seg(1, 8, 'cccc')).ack).to.include({ stableOffset: 4 });
    expect(store.append(seg(1, 4, 'bbbb')).ack).to.include({ stableOffset: 12 });
  });

  it('fuses exactly N bytes from overlapping, reordered and duplicated segments', async () => {
    store.append(connRec(1));
    const text = 'The quick brown fox jumps over the lazy dog';
    const pieces: [number, number][] = [[10, 25], [0, 5], [3, 12], [24, 43], [0, 43], [15, 20]];
    for (const [a, b] of pieces) store.append(seg(1, a, text.slice(a, b)));
    for (const [off, len] of [[0, 43], [4, 1], [9, 20], [42, 1]] as const) {
      expect((await store.readInstream(1, off, len)).toString()).to.equal(text.slice(off, off + len));
    }
  });

  it('refuses to read bytes that are not stable yet', async () => {
    store.append(connRec(1));
    store.append(seg(1, 0, 'abc'));
    store.append(seg(1, 5, 'fgh'));
    try {
      await store.readInstream(1, 0, 6);
      expect.fail('read');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.NOT_AVAILABLE)).to.equal(true);
    }
  });

  it('counts a FIN as one offset and never serves it as data', async () => {
    store.append(connRec(1));
    const r = store.append(seg(1, 0, 'bye', SegFlag.FIN));
    expect(r.ack).to.include({ stableOffset: 4 });
    expect((await store.readInstream(1, 0, 3)).toString()).to.equal('bye');
    try {
      await store.readInstream(1, 0, 4);
      expect.fail('read the FIN');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.NOT_AVAILABLE)).to.equal(true);
    }
  });

  it('stores a duplicate once and still acknowledges it', async () => {
    store.append(connRec(1));
    const first = store.append(seg(1, 0, 'abc'));
    const again = store.append(seg(1, 0, 'abc'));
    expect(first.lsn).to.be.a('number');
    expect(again.lsn).to.equal(null);
    expect(again.ack).to.deep.equal(first.ack);
    expect(store.append(connRec(1)).lsn).to.equal(null);
  });

  it('refuses a connection record that reuses an id with another 4-tuple', () => {
    store.append(connRec(1));
    const other = { ...connRec(1), clientPort: 9 };
    expect(() => store.append(other)).to.throw().with.property('code', ErrorCode.CONFLICT);
  });

  it('refuses a segment for a connection it has no record of', () => {
    expect(() => store.append(seg(42, 0, 'x'))).to.throw().with.property('code', ErrorCode.UNKNOWN_CONNECTION);
  });

  it('acknowledges the highest contiguous call number of a stream', async () => {
    const call = (n: number) => ({ kind: 'call' as const, epoch: 1, stream: 'p1', callNo: n, data: Buffer.from([n]) });
    expect(store.append(call(1)).ack).to.deep.include({ contiguous: 1 });
    expect(store.append(call(3)).ack).to.deep.include({ contiguous: 1 });
    expect(store.append(call(2)).ack).to.deep.include({ contiguous: 3 });
    const calls = await store.readCalls('p1', 2, 10);
    expect(calls.map((c) => c.callNo)).to.deep.equal([2, 3]);
    expect(calls[1]!.data).to.deep.equal(Buffer.from([3]));
  });

  it('stores a batch of calls once, acknowledges them cumulatively, and serves each one', async () => {
    const batch = (first: number, n: number) => ({ kind: 'call-batch' as const, epoch: 1, stream: 'b', firstCallNo: first, datas: Array.from({ length: n }, (_, i) => Buffer.from(`c${first + i}`)) });
    store.append({ kind: 'call', epoch: 1, stream: 'b', callNo: 1, data: Buffer.from('c1') });
    expect(store.append(batch(2, 3)).ack).to.deep.include({ contiguous: 4 });
    // A resend that overlaps what is stored adds only the new calls.
    const again = store.append(batch(3, 4));
    expect(again.ack).to.deep.include({ contiguous: 6 });
    expect(store.append(batch(2, 5)).lsn).to.equal(null);
    const calls = await store.readCalls('b', 1, 10);
    expect(calls.map((c) => c.data.toString())).to.deep.equal(['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    await store.close();
    store = await openStore();
    expect(store.positions().streams).to.deep.equal([{ stream: 'b', lastCallNo: 6 }]);
    expect((await store.readCalls('b', 5, 1))[0]!.data.toString()).to.equal('c5');
  });

  it('refuses writes beyond the cap with a clear error and keeps what it had', async () => {
    await store.close();
    store = await openStore('commit', 400);
    store.append(connRec(1));
    store.append(seg(1, 0, 'x'.repeat(200)));
    expect(() => store.append(seg(1, 200, 'y'.repeat(200)))).to.throw().with.property('code', ErrorCode.CAPACITY);
    // The refused bytes left no trace: the same offset is accepted once there is room.
    expect(store.positions().conns[0]!.stableOffset).to.equal(200);
    expect((await store.readInstream(1, 0, 200)).toString()).to.equal('x'.repeat(200));
  });

  it('has every acknowledged record after a restart on the same directory', async () => {
    store.append(connRec(1));
    store.append(seg(1, 0, 'hello '));
    store.append(seg(1, 10, 'ld'));
    store.append({ kind: 'call', epoch: 1, stream: 's', callNo: 1, data: Buffer.from('c1') });
    await stable(store.append(seg(1, 6, 'wor')));
    await store.setEpoch(3, 'node-x');
    await store.close();
    store = await openStore();
    expect(store.epoch).to.equal(3);
    expect(store.owner).to.equal('node-x');
    expect(store.positions().conns).to.deep.equal([{ connId: 1, stableOffset: 9, closed: false }]);
    expect(store.positions().streams).to.deep.equal([{ stream: 's', lastCallNo: 1 }]);
    expect((await store.readInstream(1, 0, 9)).toString()).to.equal('hello wor');
    expect(store.append(seg(1, 9, 'r')).ack).to.include({ stableOffset: 12 });
    expect(store.headLsn).to.equal(6);
  });

  it('keeps every call and closed connection under the default retention, for a backup that joins later, and collects only superseded client acks', async () => {
    await store.close();
    store = await openStore('commit', 1 << 30, 'all');
    store.append(connRec(1));
    store.append(seg(1, 0, 'abc'));
    store.append({ kind: 'client-ack', epoch: 1, connId: 1, ackOffset: 0, window: 100, tsEcr: 1 });
    store.append({ kind: 'call', epoch: 1, stream: 's', callNo: 1, data: Buffer.from('c') });
    await stable(store.append({ kind: 'close', epoch: 1, connId: 1, reason: 1 }));
    store.registerBackup('hot', BackupMode.HOT, 0);
    store.consumed('hot', 5);
    expect(await store.collect()).to.equal(1);
    expect(store.positions().conns).to.deep.equal([{ connId: 1, stableOffset: 3, closed: true }]);
    expect((await store.readInstream(1, 0, 3)).toString()).to.equal('abc');
    expect(await store.readCalls('s', 1, 10)).to.have.length(1);
    expect(store.firstLsn).to.equal(0);
  });

  it('collects a closed connection only after every registered backup consumed it', async () => {
    store.append(connRec(1));
    store.append(seg(1, 0, 'abc'));
    await stable(store.append({ kind: 'close', epoch: 1, connId: 1, reason: 1 }));
    expect(await store.collect()).to.equal(0); // no backup registered: a cold one may come
    store.registerBackup('b1', BackupMode.HOT, 0);
    expect(await store.collect()).to.equal(0);
    store.consumed('b1', 2);
    expect(await store.collect()).to.equal(0); // the close record itself is not consumed yet
    store.consumed('b1', 3);
    expect(await store.collect()).to.equal(3);
    expect(store.positions().conns).to.deep.equal([]);
    expect(store.firstLsn).to.equal(3);
    expect(store.retainedBytes).to.equal(0);
    try {
      await store.readLog(0, 10, 1 << 20);
      expect.fail('read collected records');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.LOG_TRUNCATED)).to.equal(true);
    }
  });

  it('keeps a stream contiguous across a restart after its first calls were collected', async () => {
    store.append({ kind: 'call-batch', epoch: 1, stream: 's', firstCallNo: 1, datas: [Buffer.from('a'), Buffer.from('b')] });
    await stable(store.append({ kind: 'call', epoch: 1, stream: 's', callNo: 3, data: Buffer.from('c') }));
    store.registerBackup('hot', BackupMode.HOT, 0);
    store.consumed('hot', 2);
    expect(await store.collect()).to.equal(2);
    await store.close();
    store = await openStore();
    expect(store.positions().streams).to.deep.equal([{ stream: 's', lastCallNo: 3 }]);
    const r = await stable(store.append({ kind: 'call', epoch: 1, stream: 's', callNo: 4, data: Buffer.from('d') }));
    expect(r.ack).to.deep.equal({ kind: 'ack-call', stream: 's', contiguous: 4 });
  });

  it('forgets an unregistered backup, so its position holds nothing back', async () => {
    store.registerBackup('b1', BackupMode.HOT, 0);
    store.unregisterBackup('b1');
    expect(store.registeredBackups.size).to.equal(0);
    await store.close();
    store = await openStore();
    expect(store.registeredBackups.size).to.equal(0);
  });

  it('keeps call records while a cold backup is registered', async () => {
    await stable(store.append({ kind: 'call', epoch: 1, stream: 's', callNo: 1, data: Buffer.from('c') }));
    store.registerBackup('cold', BackupMode.COLD, 0);
    store.consumed('cold', 1);
    expect(await store.collect()).to.equal(0);
    expect(await store.readCalls('s', 1, 10)).to.have.length(1);
  });

  it('keeps a closed connection and its bytes while a cold backup is registered', async () => {
    store.append(connRec(1));
    store.append(seg(1, 0, 'abc'));
    await stable(store.append({ kind: 'close', epoch: 1, connId: 1, reason: 1 }));
    store.registerBackup('cold', BackupMode.COLD, 0);
    store.consumed('cold', 3);
    expect(await store.collect()).to.equal(0);
    expect(store.positions().conns).to.deep.equal([{ connId: 1, stableOffset: 3, closed: true }]);
    expect((await store.readInstream(1, 0, 3)).toString()).to.equal('abc');
  });

  it('acknowledges a bare RST under commit durability only once its record is committed', async () => {
    await stable(store.append(connRec(1)));
    await stable(store.append(seg(1, 0, 'abc')));
    const r = store.append(seg(1, 3, '', SegFlag.RST));
    expect(r.lsn).to.equal(2);
    await r.stable;
    // Committed means a reader that does not flush anything sees it.
    const env = open({ path: join(dir, 'buffer.mdb'), maxDbs: 8 });
    try {
      const log = env.openDB<Buffer, number>({ name: 'log', encoding: 'binary' });
      expect(log.get(2), 'the RST record').to.not.equal(undefined);
    } finally {
      await env.close();
    }
  });

  describe('under memory durability', () => {
    beforeEach(async () => {
      await store.close();
      store = await openStore('memory');
    });

    it('acknowledges at once and serves the record to a reader right away', async () => {
      store.append(connRec(1));
      const r = store.append(seg(1, 0, 'now'));
      expect(r.stable).to.equal(null);
      expect(r.ack).to.include({ stableOffset: 3 });
      // No waiting between the acknowledgement and the read: the reader flushes what waits.
      expect((await store.readInstream(1, 0, 3)).toString()).to.equal('now');
      expect((await store.readLog(0, 10, 1 << 20)).map((e) => e.lsn)).to.deep.equal([0, 1]);
    });

    it('writes every acknowledged record to LMDB on its own, with no reader asking', async () => {
      store.append(connRec(1));
      store.append(seg(1, 0, 'later'));
      // What LMDB holds, as a process that crashed now would leave it: committed records only.
      const env = open({ path: join(dir, 'buffer.mdb'), maxDbs: 8 });
      try {
        const log = env.openDB<Buffer, number>({ name: 'log', encoding: 'binary' });
        await until(() => log.get(1) !== undefined, 2000, 'the segment record to be committed');
        expect(decodeRecord(log.get(1)!)).to.deep.include({ kind: 'segment', offset: 0 });
      } finally {
        await env.close();
      }
    });

    it('applies waiting writes in the order they were made, so the newest row of a connection wins', async () => {
      store.append(connRec(1));
      store.append({ kind: 'client-ack', epoch: 1, connId: 1, ackOffset: 10, window: 100, tsEcr: 1 });
      store.append({ kind: 'client-ack', epoch: 1, connId: 1, ackOffset: 20, window: 200, tsEcr: 2 });
      store.append({ kind: 'close', epoch: 1, connId: 1, reason: 1 });
      await store.close();
      store = await openStore('memory');
      expect(store.connections()).to.deep.equal([{ connId: 1, stableOffset: 0, heldBeyond: 0, ackOffset: 20, closed: true }]);
      expect(store.headLsn).to.equal(4);
    });

    it('keeps collected records gone across a restart, though their writes waited', async () => {
      store.append(connRec(1));
      store.append(seg(1, 0, 'abc'));
      store.append({ kind: 'close', epoch: 1, connId: 1, reason: 1 });
      store.registerBackup('b1', BackupMode.HOT, 0);
      store.consumed('b1', 3);
      expect(await store.collect()).to.equal(3);
      await store.close();
      store = await openStore('memory');
      expect(store.positions().conns).to.deep.equal([]);
      expect(store.firstLsn).to.equal(3);
      expect(store.registeredBackups.get('b1')).to.deep.equal({ mode: BackupMode.HOT, consumed: 3 });
    });
  });

  for (const [durability, waits] of [['fsync', true], ['commit', false]] as const) {
    it(`${waits ? 'waits' : 'does not wait'} for LMDB's flush to disk before acknowledging under ${durability}`, async () => {
      await store.close();
      store = await openStore(durability);
      await stable(store.append(connRec(1)));
      // Hold the flush back: only an acknowledgement that waits for it is held with it.
      const env = (store as unknown as { env: { flushed: PromiseLike<unknown> } }).env;
      const own = Object.getOwnPropertyDescriptor(env, 'flushed');
      const real = env.flushed;
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      Object.defineProperty(env, 'flushed', { configurable: true, get: () => held.then(() => real) });
      try {
        let acked = false;
        const r = store.append(seg(1, 0, 'abc'));
        void r.stable!.then(() => (acked = true));
        await store.settled();
        await new Promise((res) => setTimeout(res, 20));
        expect(acked, 'acknowledged while the flush was held').to.equal(!waits);
        release();
        await r.stable;
        expect(acked).to.equal(true);
      } finally {
        if (own) Object.defineProperty(env, 'flushed', own);
        else delete (env as { flushed?: unknown }).flushed;
      }
    });
  }

  for (const durability of ['memory', 'commit', 'fsync'] as const) {
    it(`makes a record readable after its acknowledgement under ${durability}`, async () => {
      await store.close();
      store = await openStore(durability);
      await stable(store.append(connRec(7)));
      await stable(store.append(seg(7, 0, 'durable')));
      expect((await store.readInstream(7, 0, 7)).toString()).to.equal('durable');
    });
  }
});
