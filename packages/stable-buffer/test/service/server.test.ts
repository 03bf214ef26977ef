import { expect } from 'chai';
import { ErrorCode, isFtcpError } from '../../src/errors.js';
import { makeCurveKeyPair } from '../../src/curve.js';
import { encodeFrame, MsgType, Role, type Message } from '../../src/protocol/messages.js';
import { Dealer } from 'zeromq';
import type { SubscriptionEvent } from '../../src/client.js';
import { MAX_RECEIVED_MESSAGE } from '../../src/server.js';
import { Harness, conn, prng, until } from './helpers.js';

describe('StableBufferServer over real sockets', function () {
  this.timeout(30_000);
  let h: Harness;
  afterEach(async () => h?.stop());

  for (const durability of ['memory', 'commit', 'fsync'] as const) {
    it(`acknowledges pipelined segments with a growing stable-seq under ${durability}`, async () => {
      h = await new Harness().start({ durability });
      const p = h.client('primary');
      await p.attachAsWriter();
      await p.writeConn(conn(1, 0xffffff00));
      const acks = await Promise.all(
        Array.from({ length: 200 }, (_, i) => p.writeSegment({ connId: 1, offset: i * 10, flags: 0, payload: Buffer.alloc(10, i) })),
      );
      expect(acks.map((a) => a.stableOffset)).to.deep.equal(Array.from({ length: 200 }, (_, i) => (i + 1) * 10));
      // The stable sequence number wraps past 2^32 with the client's ISN.
      expect(acks.at(-1)!.stableSeq).to.equal((0xffffff00 + 1 + 2000) >>> 0);
      const back = await h.client('reader').readInstream(1, 995, 10);
      expect([...back]).to.deep.equal([99, 99, 99, 99, 99, 100, 100, 100, 100, 100]);
    });
  }

  it('reads an instream longer than one frame holds, in order, from any offset', async () => {
    h = await new Harness().start();
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    const next = prng(7);
    const all = Buffer.alloc(9 * 1024 * 1024 + 123);
    for (let i = 0; i < all.length; i++) all[i] = Math.floor(next() * 256);
    const acks: Promise<unknown>[] = [];
    for (let at = 0; at < all.length; at += 60_000) acks.push(p.writeSegment({ connId: 1, offset: at, flags: 0, payload: all.subarray(at, at + 60_000) }));
    await Promise.all(acks);
    // 9 MiB is more than twice the largest frame: one request could not answer it.
    const back = await h.client('reader').readInstream(1, 77, all.length - 77);
    expect(back.equals(all.subarray(77))).to.equal(true);
  });

  it('refuses writes before a writer hello and from an older epoch', async () => {
    h = await new Harness().start();
    const errs: string[] = [];
    const p = h.client('primary');
    expect((await p.attachAsWriter()).epoch).to.equal(1);
    await p.writeConn(conn(1));
    const raw = h.client('intruder');
    raw.sendRaw(encodeFrame({ kind: 'segment', epoch: 1, connId: 1, offset: 0, flags: 0, payload: Buffer.from('x') }, 5));
    await raw.ping();
    const b = h.client('backup');
    const { epoch } = await b.promote(1);
    expect(epoch).to.equal(2);
    p.on('fenced', (why: string) => errs.push(why));
    try {
      await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('late') });
      expect.fail('a fenced primary got an acknowledgement');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.STALE_EPOCH), String(err)).to.equal(true);
    }
    expect(errs).to.have.length(1);
    // The old primary cannot come back as writer of the new epoch either.
    try {
      await h.client('primary-again').attachAsWriter(0);
      expect.fail('hello accepted');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.STALE_EPOCH)).to.equal(true);
    }
    // The promoted backup writes in its epoch.
    await b.attachAsWriter(2);
    expect(await b.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('ok') })).to.deep.include({ stableOffset: 2 });
    expect((h.server.status().counters as { errors: Record<string, number> }).errors[ErrorCode.NOT_WRITER]).to.equal(1);
  });

  it('lets only one of two backups that saw the same primary fail take over; the other is refused with a coded error', async () => {
    h = await new Harness().start();
    const p = h.client('primary');
    await p.attachAsWriter();
    const a = h.client('backup-a');
    const b = h.client('backup-b');
    const results = await Promise.allSettled([a.promote(1), b.promote(1)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won.map((r) => r.value.epoch)).to.deep.equal([2]);
    expect(lost).to.have.length(1);
    expect(isFtcpError(lost[0]!.reason, ErrorCode.STALE_EPOCH), String(lost[0]!.reason)).to.equal(true);
    const winner = results[0]!.status === 'fulfilled' ? 'backup-a' : 'backup-b';
    expect({ epoch: h.server.store.epoch, owner: h.server.store.owner }).to.deep.equal({ epoch: 2, owner: winner });
    expect(String(lost[0]!.reason)).to.include(`owned by ${winner}`);
  });

  it('no longer counts a promoted backup as a backup: it writes the log now', async () => {
    h = await new Harness().start();
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    const b = h.client('backup-b');
    const sub = b.subscribe({ fromLsn: 0, mode: 'hot' });
    const backups = (): { node: string }[] => h.server.status().backups as { node: string }[];
    for (let i = 0; i < 200 && backups().length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(backups().map((x) => x.node)).to.deep.equal(['backup-b']);
    await b.promote(1);
    expect(backups()).to.deep.equal([]);
    sub.end();
  });

  it('streams the log to a hot backup in order, old records first, then new ones as they arrive', async () => {
    h = await new Harness().start();
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    for (let i = 0; i < 50; i++) await p.writeCall({ stream: 'p0', callNo: i + 1, data: Buffer.from([i]) });
    const b = h.client('backup');
    const sub = b.subscribe({ mode: 'hot', window: 16 });
    const seen: number[] = [];
    const kinds: string[] = [];
    const done = (async () => {
      for await (const ev of sub) {
        if (ev.kind !== 'records') continue;
        for (const e of ev.entries) {
          seen.push(e.lsn);
          kinds.push(e.record.kind);
        }
        if (seen.length >= 101) break;
      }
    })();
    for (let i = 0; i < 50; i++) await p.writeSegment({ connId: 1, offset: i, flags: 0, payload: Buffer.from('z') });
    await done;
    expect(seen).to.deep.equal(Array.from({ length: 101 }, (_, i) => i));
    expect(kinds[0]).to.equal('conn');
    expect(kinds.filter((k) => k === 'call')).to.have.length(50);
    await until(() => (h.server.store.registeredBackups.get('backup')?.consumed ?? 0) >= 100, 2000, 'consumption to reach the buffer');
  });

  it('declares a silent primary failed within probe interval + failure timeout and tells the backup', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(4));
    await p.writeCall({ stream: 'p0', callNo: 1, data: Buffer.from('t') });
    const b = h.client('backup');
    const sub = b.subscribe({ mode: 'hot' });
    // A primary that answers probes is never declared failed.
    await new Promise((r) => setTimeout(r, 300));
    expect(h.server.counters.failuresDeclared).to.equal(0);
    expect(p.probesAnswered).to.be.greaterThan(3);
    const failed = (async () => {
      for await (const ev of sub) if (ev.kind === 'failed') return { ev, at: performance.now() };
      throw new Error('subscription ended');
    })();
    const silentFrom = performance.now();
    p.close();
    const { ev, at } = await failed;
    const took = at - silentFrom;
    // Measured here: 32-36 ms. The margin covers timer and event-loop jitter
    // (server and client share this process), not a slack detector.
    expect(took).to.be.lessThan(10 + 30 + 40);
    const f = ev as Extract<SubscriptionEvent, { kind: 'failed' }>;
    expect(f.epoch).to.equal(1);
    expect(f.node).to.equal('primary');
    expect(f.positions.streams).to.deep.equal([{ stream: 'p0', lastCallNo: 1 }]);
    expect(f.positions.conns).to.deep.equal([{ connId: 4, stableOffset: 0, closed: false }]);
  });

  it('tells a backup that subscribes after the failure was declared, at once', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(5));
    p.close();
    await until(() => h.server.counters.failuresDeclared === 1, 2000, 'the failure to be declared');
    const sub = h.client('late-backup').subscribe({ mode: 'cold' });
    const seen: string[] = [];
    const failed = (async () => {
      for await (const ev of sub) {
        seen.push(ev.kind);
        if (ev.kind === 'failed') return ev;
      }
      return null;
    })();
    const timeout = new Promise<null>((r) => setTimeout(() => r(null), 5000));
    const ev = await Promise.race([failed, timeout]);
    if (!ev) expect.fail(`no failure event within 5 s; saw ${JSON.stringify(seen)}; status ${JSON.stringify(h.server.status().detector)}`);
    expect(ev.epoch).to.equal(1);
    expect(ev.positions.conns).to.deep.equal([{ connId: 5, stableOffset: 0, closed: false }]);
    sub.end();
  });

  it('stops telling new backups that a primary failed once that primary speaks again', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    // A writer that does not answer probes (a stalled primary), then speaks.
    const stalled = new Dealer({ linger: 0 });
    try {
      stalled.connect(h.server.endpoint);
      await stalled.send(encodeFrame({ kind: 'hello', epoch: 0, role: Role.WRITER, node: 'primary' }, 1));
      await stalled.receive();
      await until(() => h.server.counters.failuresDeclared === 1, 2000, 'the failure to be declared');
      await stalled.send(encodeFrame({ kind: 'ping' }, 2));
      await until(() => h.server.counters.failuresRetracted === 1, 2000, 'the verdict to be retracted');
      expect((h.server.status().detector as { state: string }).state).to.not.equal('failed');
      const sub = h.client('late-backup').subscribe({ mode: 'cold' });
      const seen: string[] = [];
      const watching = (async () => {
        for await (const ev of sub) seen.push(ev.kind);
      })();
      // Long enough for a subscribe reply and anything sent with it; the
      // stalled writer answers no probe meanwhile, so keep it talking.
      for (let i = 0; i < 10; i++) {
        await stalled.send(encodeFrame({ kind: 'ping' }, 3 + i));
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(seen).to.not.include('failed');
      sub.end();
      await watching;
    } finally {
      stalled.close();
    }
  });

  it('shows the latest report of every node in its status and refuses a report that is not a JSON object', async () => {
    h = await new Harness().start();
    const b = h.client('backup-b');
    b.report('backup', { mode: 'hot', replicaLag: 7 });
    b.report('backup', { mode: 'hot', replicaLag: 2 });
    expect(b.silentForMs()).to.equal(0);
    await b.ping();
    expect(b.silentForMs()).to.be.lessThan(1000);
    const nodes = (await b.status()).nodes as { node: string; role: string; report: Record<string, unknown> }[];
    expect(nodes).to.have.length(1);
    expect(nodes[0]).to.deep.include({ node: 'backup-b', role: 'backup', report: { mode: 'hot', replicaLag: 2 } });
    const bad = h.client('bad');
    bad.sendRaw(encodeFrame({ kind: 'report', node: 'bad', role: 'backup', json: '[1,2]' }, 77));
    await bad.ping();
    expect(h.server.counters.errors[ErrorCode.MALFORMED_FRAME]).to.equal(1);
  });

  it('keeps a writer\'s unacknowledged writes across a buffer restart and stores duplicates once', async () => {
    h = await new Harness().start({ durability: 'commit' });
    const endpoint = h.server.endpoint;
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('before|') });
    await h.server.close();
    // Written while the buffer is down: these must reach the restarted buffer.
    const late = [
      p.writeSegment({ connId: 1, offset: 7, flags: 0, payload: Buffer.from('during|') }),
      p.writeCall({ stream: 's', callNo: 1, data: Buffer.from('c') }),
    ];
    await new Promise((r) => setTimeout(r, 100));
    expect(p.unacknowledged).to.equal(2);
    await h.start({ listen: endpoint, durability: 'commit' });
    const [seg, call] = await Promise.all(late);
    expect(seg).to.deep.include({ stableOffset: 14 });
    expect(call).to.equal(1);
    expect(p.reconnects).to.be.greaterThan(0);
    expect((await h.client('r').readInstream(1, 0, 14)).toString()).to.equal('before|during|');
    expect(h.server.store.headLsn).to.equal(4);
  });

  it('resumes a subscription after a buffer restart with no record twice and none missing', async () => {
    h = await new Harness().start({ durability: 'commit' });
    const endpoint = h.server.endpoint;
    const p = h.client('primary');
    await p.attachAsWriter();
    for (let i = 1; i <= 20; i++) await p.writeCall({ stream: 's', callNo: i, data: Buffer.from([i]) });
    const b = h.client('backup');
    const sub = b.subscribe({ mode: 'hot', window: 64 });
    const it = sub[Symbol.asyncIterator]();
    const lsns: number[] = [];
    // Pull one batch only: the rest of what arrives waits, delivered but not consumed.
    const first = await it.next();
    if (!first.done && first.value.kind === 'records') lsns.push(...first.value.entries.map((e) => e.lsn));
    await new Promise((r) => setTimeout(r, 50));
    await h.server.close();
    await h.start({ listen: endpoint, durability: 'commit' });
    for (let i = 21; i <= 30; i++) await p.writeCall({ stream: 's', callNo: i, data: Buffer.from([i]) });
    for (let guard = 0; guard < 100 && lsns.length < 30; guard++) {
      const r = await it.next();
      if (r.done) break;
      if (r.value.kind === 'records') lsns.push(...r.value.entries.map((e) => e.lsn));
    }
    expect(lsns).to.deep.equal(Array.from({ length: 30 }, (_, i) => i));
  });

  it('answers 100 000 random and mutated frames with coded errors and keeps its store intact', async function () {
    this.timeout(120_000);
    const seed = Number(process.env.FTCP_FUZZ_SEED ?? 20261123);
    console.log(`      fuzz seed ${seed} (FTCP_FUZZ_SEED)`);
    const rnd = prng(seed);
    h = await new Harness().start({ durability: 'memory' });
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('precious') });
    const templates: Message[] = [
      { kind: 'segment', epoch: 1, connId: 1, offset: 0, flags: 0, payload: Buffer.from('PRECIOUS') },
      { kind: 'conn', epoch: 1, ...conn(1) },
      { kind: 'call', epoch: 1, stream: 'fz', callNo: 1, data: Buffer.from('x') },
      { kind: 'read-instream', connId: 1, offset: 0, length: 8 },
      { kind: 'subscribe', fromLsn: 0, window: 1, mode: 0, node: 'n' },
      { kind: 'hello', epoch: 9, role: 1, node: 'x' },
      { kind: 'close', epoch: 1, connId: 1, reason: 1 },
    ].map((m) => m as Message);
    const fuzzer = h.client('fuzzer');
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      let f: Buffer;
      const r = rnd();
      if (r < 0.3) {
        f = Buffer.alloc(Math.floor(rnd() * 64));
        for (let k = 0; k < f.length; k++) f[k] = Math.floor(rnd() * 256);
      } else {
        f = Buffer.from(encodeFrame(templates[Math.floor(rnd() * templates.length)]!, i));
        const flips = 1 + Math.floor(rnd() * 4);
        for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.3) f = f.subarray(0, Math.floor(rnd() * f.length));
        // Keep the fuzzer from becoming the writer or from promoting: those are legitimate requests.
        if (f[1] === MsgType.HELLO || f[1] === MsgType.PROMOTE) f[1] = 0x7e;
      }
      // Request ids apart from the fuzzer's own pings, so an error reply is never taken for a pong.
      if (f.length >= 8) f.writeUInt32LE(0x40000000 + i, 4);
      fuzzer.sendRaw(f);
      if (i % 2000 === 0) await fuzzer.ping();
    }
    await fuzzer.ping();
    const errors = Object.values(h.server.counters.errors).reduce((a, b) => a + b, 0);
    expect(errors).to.be.greaterThan(N / 2);
    // The store still holds the primary's bytes and serves them; the writer still writes.
    expect((await h.client('check').readInstream(1, 0, 8)).toString()).to.equal('precious');
    expect(await p.writeSegment({ connId: 1, offset: 8, flags: 0, payload: Buffer.from('!') })).to.deep.include({ stableOffset: 9 });
    expect(h.server.store.epoch).to.equal(1);
  });

  it('takes 20 000 mutated records from the writer itself without changing a byte it acknowledged, and reopens the store after', async function () {
    this.timeout(120_000);
    const seed = Number(process.env.FTCP_FUZZ_SEED ?? 20261124);
    console.log(`      fuzz seed ${seed} (FTCP_FUZZ_SEED)`);
    const rnd = prng(seed);
    h = await new Harness().start({ durability: 'commit' });
    const endpoint = h.server.endpoint;
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('precious') });
    for (let i = 1; i <= 3; i++) await p.writeCall({ stream: 'keep', callNo: i, data: Buffer.from([i]) });
    const live = collect(h.client('live').subscribe({ mode: 'observer' }));
    // Through the writer's own connection, so that what survives decoding reaches the store.
    const templates: Message[] = [
      { kind: 'segment', epoch: 1, connId: 1, offset: 0, flags: 0, payload: Buffer.from('PRECIOUS') },
      { kind: 'segment', epoch: 1, connId: 2, offset: 0, flags: 0, payload: Buffer.from('fuzzed bytes') },
      { kind: 'conn', epoch: 1, ...conn(2) },
      { kind: 'call', epoch: 1, stream: 'keep', callNo: 2, data: Buffer.from('X') },
      { kind: 'call', epoch: 1, stream: 'fz', callNo: 1, data: Buffer.from('x') },
      { kind: 'call-batch', epoch: 1, stream: 'fb', firstCallNo: 1, datas: [Buffer.from('a'), Buffer.from('bc')] },
      { kind: 'client-ack', epoch: 1, connId: 1, ackOffset: 5, window: 65535, tsEcr: 9 },
      { kind: 'close', epoch: 1, connId: 2, reason: 1 },
    ];
    const recordTypes = new Set<number>([MsgType.CONN, MsgType.SEGMENT, MsgType.CALL, MsgType.CALL_BATCH, MsgType.CLIENT_ACK, MsgType.CLOSE]);
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const f = Buffer.from(encodeFrame(templates[Math.floor(rnd() * templates.length)]!, 0));
      const flips = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < flips; k++) f[1 + Math.floor(rnd() * (f.length - 1))] = Math.floor(rnd() * 256);
      if (!recordTypes.has(f[1]!)) f[1] = 0x7e;
      f.writeUInt32LE(0x40000000 + i, 4);
      p.sendRaw(f);
      if (i % 2000 === 0) await p.ping();
    }
    await p.ping();
    const stored = h.server.store.headLsn;
    expect(stored, 'some mutated records were valid and stored').to.be.greaterThan(5 + 100);
    const intact = async (): Promise<void> => {
      const r = h.client(`check-${h.server.store.headLsn}`);
      expect((await r.readInstream(1, 0, 8)).toString()).to.equal('precious');
      expect((await r.readCalls('keep', 1, 3)).map((c) => [...c.data])).to.deep.equal([[1], [2], [3]]);
    };
    await intact();
    const seenLive = await live.take(stored);
    await h.server.close();
    await h.start({ listen: endpoint, durability: 'commit' });
    expect(h.server.store.headLsn).to.equal(stored);
    await intact();
    // The log read back from disk is exactly what subscribers saw go by.
    const replayed = await collect(h.client('replay').subscribe({ mode: 'observer' })).take(stored);
    expect(replayed).to.deep.equal(seenLive);
    expect(h.server.store.epoch).to.equal(1);
    await p.writeConn(conn(7001));
    expect(await p.writeSegment({ connId: 7001, offset: 0, flags: 0, payload: Buffer.from('!') })).to.deep.include({ stableOffset: 1 });
  });

  it('refuses a write past the log cap with FTCP_ERR_CAPACITY, keeps what it had, and takes the write once restarted with a larger cap', async function () {
    this.timeout(20_000);
    const said: string[] = [];
    const logger = { log: (_level: string, event: string) => said.push(event) };
    h = await new Harness().start({ durability: 'commit', maxLogBytes: 600, logger });
    const endpoint = h.server.endpoint;
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.alloc(200, 'x') });
    let taken = false;
    const waiting = p.writeSegment({ connId: 1, offset: 200, flags: 0, payload: Buffer.alloc(400, 'y') }).then((a) => ((taken = true), a));
    // Offered again a second later, refused again: said once, not once per refusal.
    await until(() => (h.server.counters.errors[ErrorCode.CAPACITY] ?? 0) >= 2, 5000, 'the write to be refused twice');
    expect(said.filter((e) => e === 'log-full')).to.have.length(1);
    expect({ taken, unacknowledged: p.unacknowledged, refused: p.writesRefused }).to.deep.equal({ taken: false, unacknowledged: 1, refused: 1 });
    expect((await h.client('reader').readInstream(1, 0, 200)).toString()).to.equal('x'.repeat(200));
    await h.server.close();
    await h.start({ listen: endpoint, durability: 'commit', maxLogBytes: 1 << 20 });
    expect(await waiting).to.deep.include({ stableOffset: 600 });
    const back = await h.client('reader-2').readInstream(1, 0, 600);
    expect(back.toString()).to.equal('x'.repeat(200) + 'y'.repeat(400));
  });

  it('answers a frame over the size limit with a coded error, and survives one too large to take in at all', async () => {
    h = await new Harness().start();
    const p = h.client('primary');
    await p.attachAsWriter();
    await p.writeConn(conn(1));
    const big = h.client('big');
    const header = encodeFrame({ kind: 'ping' }, 0x40000001);
    const frame = (size: number) => Buffer.concat([header, Buffer.alloc(size - header.length, 0xab)]);
    big.sendRaw(frame(20 * 1024 * 1024));
    expect(await big.ping()).to.be.a('number');
    expect(h.server.counters.errors[ErrorCode.OVERSIZED_FRAME]).to.equal(1);
    // Past MAX_RECEIVED_MESSAGE ZeroMQ drops the peer's connection before the
    // message reaches us: the peer reconnects and is served, nobody else notices.
    big.sendRaw(frame(MAX_RECEIVED_MESSAGE + 1));
    await until(() => big.reconnects > 0, 5000, 'the dropped peer to reconnect');
    expect(await big.ping()).to.be.a('number');
    expect(await p.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from('ok') })).to.deep.include({ stableOffset: 2 });
    expect(h.server.counters.errors[ErrorCode.OVERSIZED_FRAME]).to.equal(1);
  });

  it('refuses a peer whose CURVE key it does not know, and serves one it does', async () => {
    const server = makeCurveKeyPair();
    const good = makeCurveKeyPair();
    const bad = makeCurveKeyPair();
    h = await new Harness().start({ curve: { ...server, clientPublicKeys: [good.publicKey] } });
    const ok = h.client('good', { curve: { serverPublicKey: server.publicKey, ...good } });
    expect(await ok.ping()).to.be.a('number');
    const refused = h.client('bad', { curve: { serverPublicKey: server.publicKey, ...bad }, requestTimeoutMs: 500 });
    try {
      await refused.ping();
      expect.fail('an unknown key was served');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.TIMEOUT)).to.equal(true);
    }
    const plain = h.client('plain', { requestTimeoutMs: 500 });
    try {
      await plain.ping();
      expect.fail('a plaintext peer was served');
    } catch (err) {
      expect(isFtcpError(err, ErrorCode.TIMEOUT)).to.equal(true);
    }
  });
});

/** Collects a subscription's records as they arrive; take(n) waits (at most 20 s) for the first n. */
function collect(sub: AsyncIterable<SubscriptionEvent>): { take: (n: number) => Promise<{ lsn: number; record: unknown }[]> } {
  const got: { lsn: number; record: unknown }[] = [];
  let failure: unknown = null;
  void (async () => {
    try {
      for await (const ev of sub) if (ev.kind === 'records') got.push(...ev.entries);
    } catch (err) {
      failure = err;
    }
  })();
  return {
    take: async (n) => {
      await until(() => got.length >= n || failure !== null, 20_000, `${n} records (have ${got.length})`);
      if (failure) throw failure;
      expect(got.map((e) => e.lsn)).to.deep.equal(Array.from({ length: got.length }, (_, i) => i));
      return got.slice(0, n);
    },
  };
}
