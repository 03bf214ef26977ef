import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { NswAgent, type Divergence } from '../src/agent.js';
import { ErrorCode, FtcpError, NswErrorCode } from '../src/errors.js';
import type { ReplicatedConnection } from '../src/connections.js';
import { AdoptStep, CallFlag, CallKind, FrameSplitter, NSW_PROTOCOL_VERSION, ShimMode, decodeMessage, encodeCallData, encodeLockPosition, encodeMessage, sendHash, type CallBody, type NswMessage } from '../src/protocol.js';
import type { RebuildPlan, RebuildReport, RebuildSource, TcpRebuildState } from '../src/rebuild.js';
import { MemoryRecordSink, type RecordSink } from '../src/sink.js';
import { tempDir } from './helpers.js';

/** A shim stand-in speaking the protocol over a real unix socket. */
class FakeShim {
  private readonly splitter = new FrameSplitter();
  private readonly inbox: NswMessage[] = [];
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      for (const f of this.splitter.push(d)) this.inbox.push(decodeMessage(f));
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static open(path: string): Promise<FakeShim> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new FakeShim(s)));
      s.once('error', reject);
    });
  }

  send(msg: NswMessage | Buffer): void {
    this.socket.write(Buffer.isBuffer(msg) ? msg : encodeMessage(msg));
  }

  /** The next message, or null if the agent closed the connection first. */
  async next(timeoutMs = 2000): Promise<NswMessage | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 20);
      });
    }
    return this.inbox.shift() ?? null;
  }

  close(): void {
    this.socket.destroy();
  }
}

const call = (callNo: number, kind: number, result: bigint, extra: Partial<CallBody> = {}): CallBody => ({
  callNo, kind, flags: 0, errno: 0, result, arg: 0n, payload: Buffer.alloc(0), ...extra,
});
const hello = (name: string, mode: 1 | 2): NswMessage => ({ type: 'hello', pid: 1, ppid: 0, mode, name });

describe('NswAgent', function () {
  this.timeout(10000);
  let tmp: ReturnType<typeof tempDir>;
  let sink: MemoryRecordSink;
  let primary: NswAgent;
  let replica: NswAgent;
  const shims: FakeShim[] = [];
  const open = async (agent: NswAgent): Promise<FakeShim> => {
    const s = await FakeShim.open(agent.options.socketPath);
    shims.push(s);
    return s;
  };

  beforeEach(async () => {
    tmp = tempDir('agent');
    sink = new MemoryRecordSink();
    primary = new NswAgent({ socketPath: join(tmp.dir, 'p.sock'), mode: 'record', sink });
    replica = new NswAgent({ socketPath: join(tmp.dir, 'r.sock'), mode: 'playback', source: sink });
    await primary.listen();
    await replica.listen();
  });
  afterEach(async () => {
    for (const s of shims.splice(0)) s.close();
    await primary.close();
    await replica.close();
    tmp.remove();
  });

  it('appends each CALL to the sink as the record of its stream and call number', async () => {
    const s = await open(primary);
    s.send(hello('p', ShimMode.RECORD));
    s.send({ type: 'call', call: call(1, CallKind.GETPID, 42n) });
    s.send({ type: 'call', call: call(2, CallKind.TIME, 1700000000n) });
    s.send({ type: 'wait', callNo: 2 });
    expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 2 });
    expect(sink.records('p')).to.have.length(2);
    expect(primary.counters.recorded).to.equal(2);
  });

  it('answers WAIT only once the records up to it are stable (output commit)', async () => {
    sink.hold();
    const s = await open(primary);
    s.send(hello('p', ShimMode.RECORD));
    s.send({ type: 'call', call: call(1, CallKind.GETPID, 42n) });
    s.send({ type: 'wait', callNo: 1 });
    expect(await s.next(200)).to.equal(null);
    expect(primary.counters.unstable).to.equal(1);
    sink.release();
    expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 1 });
    expect(primary.stableCallNo('p')).to.equal(1);
    expect(primary.counters.unstable).to.equal(0);
  });

  it('plays back the primary\'s records to a replica in order', async () => {
    await sink.append('p', 1, encodeCallData(call(1, CallKind.GETPID, 4242n)));
    const s = await open(replica);
    s.send(hello('p', ShimMode.PLAYBACK));
    s.send({ type: 'play', call: call(1, CallKind.GETPID, 0n) });
    const r = await s.next();
    expect(r).to.deep.include({ type: 'result' });
    expect((r as Extract<NswMessage, { type: 'result' }>).call.result).to.equal(4242n);
  });

  it('reports a compared call whose result differs as a divergence and refuses to take over', async () => {
    await sink.append('p', 1, encodeCallData(call(1, CallKind.PTHREAD_CREATE, 0n)));
    const seen: Divergence[] = [];
    replica.on('divergence', (d: Divergence) => seen.push(d));
    const s = await open(replica);
    s.send(hello('p', ShimMode.PLAYBACK));
    s.send({ type: 'play', call: call(1, CallKind.PTHREAD_CREATE, 11n, { flags: CallFlag.COMPARE }) });
    const r = await s.next();
    expect(r).to.deep.include({ type: 'error', code: NswErrorCode.DIVERGENCE });
    expect(seen).to.have.length(1);
    expect(seen[0]!.primary.result).to.equal(0n);
    expect(seen[0]!.replica.result).to.equal(11n);
    expect(replica.canTakeOver).to.equal(false);
  });

  it('reports a call with another argument than the record as a divergence', async () => {
    await sink.append('p', 1, encodeCallData(call(1, CallKind.CLOCK_GETTIME, 0n, { arg: 1n })));
    const s = await open(replica);
    s.send(hello('p', ShimMode.PLAYBACK));
    s.send({ type: 'play', call: call(1, CallKind.CLOCK_GETTIME, 0n, { arg: 0n }) });
    expect(await s.next()).to.deep.include({ type: 'error', code: NswErrorCode.DIVERGENCE });
  });

  const bad: [string, (NswMessage | Buffer)[], 'record' | 'playback', string][] = [
    ['garbage instead of a frame', [Buffer.from('GET / HTTP/1.1\r\n\r\n')], 'record', ErrorCode.BAD_VERSION],
    ['a frame of an unknown type', [Buffer.from([NSW_PROTOCOL_VERSION, 0x42, 0, 0, 0, 0, 0, 0])], 'record', ErrorCode.UNKNOWN_TYPE],
    ['a CALL before HELLO', [{ type: 'call', call: call(1, CallKind.GETPID, 1n) }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a HELLO in the wrong mode', [hello('p', ShimMode.PLAYBACK)], 'record', NswErrorCode.WRONG_MODE],
    ['a CALL that skips a call number', [hello('p', ShimMode.RECORD), { type: 'call', call: call(2, CallKind.GETPID, 1n) }], 'record', NswErrorCode.OUT_OF_ORDER],
    ['a WAIT for a call never sent', [hello('p', ShimMode.RECORD), { type: 'wait', callNo: 5 }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a PLAY sent to a record agent', [hello('p', ShimMode.RECORD), { type: 'play', call: call(1, CallKind.GETPID, 1n) }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a message only the agent sends', [hello('p', ShimMode.RECORD), { type: 'stable', callNo: 1 }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a CALL with flags (records have none)', [hello('p', ShimMode.RECORD), { type: 'call', call: call(1, CallKind.GETPID, 1n, { flags: CallFlag.COMPARE }) }], 'record', ErrorCode.MALFORMED_FRAME],
    ['a truncated call body', [hello('p', ShimMode.RECORD), Buffer.from([NSW_PROTOCOL_VERSION, 2, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0])], 'record', ErrorCode.TRUNCATED_FRAME],
  ];
  for (const [what, msgs, mode, code] of bad) {
    it(`answers ${what} with ${code}, closes that connection and keeps serving other shims`, async () => {
      const agent = mode === 'record' ? primary : replica;
      const good = await open(agent);
      good.send(hello('good', mode === 'record' ? ShimMode.RECORD : ShimMode.PLAYBACK));
      const s = await open(agent);
      for (const m of msgs) s.send(m);
      expect(await s.next()).to.deep.include({ type: 'error', code });
      expect(await s.next()).to.equal(null);
      expect(s.closed).to.equal(true);
      expect(agent.counters.badInput[code]).to.equal(1);
      // The other shim is untouched.
      good.send({ type: 'call', call: call(1, CallKind.GETPID, 7n) });
      good.send({ type: 'wait', callNo: 1 });
      expect(await good.next()).to.deep.equal({ type: 'stable', callNo: 1 });
    });
  }

  it('refuses to start without the sink or source its mode needs', () => {
    expect(() => new NswAgent({ socketPath: join(tmp.dir, 'x.sock'), mode: 'record', source: sink })).to.throw().with.property('code', ErrorCode.BAD_CONFIG);
    expect(() => new NswAgent({ socketPath: join(tmp.dir, 'x.sock'), mode: 'playback', sink })).to.throw().with.property('code', ErrorCode.BAD_CONFIG);
  });

  it('tells a promoted replica\'s stream past the primary\'s last call to go live, then records its calls', async () => {
    const after = new MemoryRecordSink();
    replica.goLive(new Map(), after);
    const s = await open(replica);
    s.send(hello('p/t1', ShimMode.PLAYBACK));
    s.send({ type: 'play', call: call(1, CallKind.GETPID, 0n) });
    const r = await s.next();
    expect(r).to.deep.include({ type: 'result' });
    expect((r as Extract<NswMessage, { type: 'result' }>).call.flags).to.equal(CallFlag.LIVE);
    s.send({ type: 'call', call: call(1, CallKind.GETPID, 99n) });
    s.send({ type: 'wait', callNo: 1 });
    expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 1 });
    expect(after.records('p/t1')).to.have.length(1);
    expect(replica.liveStreams()).to.deep.equal(['p/t1']);
  });

  it('closes a recording stream whose record the buffer refuses, so its output can never leave', async () => {
    const refusing = new NswAgent({
      socketPath: join(tmp.dir, 'refusing.sock'),
      mode: 'record',
      sink: { append: () => Promise.reject(new FtcpError(ErrorCode.STALE_EPOCH, 'epoch 3 is over')) },
    });
    await refusing.listen();
    try {
      const s = await open(refusing);
      s.send(hello('p', ShimMode.RECORD));
      s.send({ type: 'call', call: call(1, CallKind.GETPID, 7n) });
      expect(await s.next()).to.deep.include({ type: 'error', code: ErrorCode.STALE_EPOCH });
      expect(await s.next()).to.equal(null);
      expect(refusing.counters.sinkFailures).to.equal(1);
      expect(refusing.counters.badInput).to.deep.equal({});
    } finally {
      await refusing.close();
    }
  });

  /** A record agent over `sink`, listening; closed by the caller. */
  async function recorder(name: string, sinkOf: RecordSink): Promise<NswAgent> {
    const agent = new NswAgent({ socketPath: join(tmp.dir, `${name}.sock`), mode: 'record', sink: sinkOf });
    await agent.listen();
    return agent;
  }

  /** A sink that gives every call one promise (a batch), settled by the test. */
  function batchSink(): { sink: RecordSink; appended: number[]; resolve: () => void; reject: (err: Error) => void } {
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const batch = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const appended: number[] = [];
    return { sink: { append: (_stream, callNo) => (appended.push(callNo), batch) }, appended, resolve: () => resolve(), reject: (err) => reject(err) };
  }

  it('answers a WAIT for calls that share one promise of the sink only once it resolves, and then for every one of them', async () => {
    const b = batchSink();
    const agent = await recorder('batch', b.sink);
    try {
      const s = await open(agent);
      s.send(hello('p', ShimMode.RECORD));
      for (let n = 1; n <= 3; n++) s.send({ type: 'call', call: call(n, CallKind.GETPID, 42n) });
      s.send({ type: 'wait', callNo: 3 });
      expect(await s.next(200)).to.equal(null);
      expect(b.appended).to.deep.equal([1, 2, 3]);
      expect(agent.counters.unstable).to.equal(3);
      expect(agent.stableCallNo('p')).to.equal(0);
      b.resolve();
      expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 3 });
      expect(agent.counters.unstable).to.equal(0);
    } finally {
      await agent.close();
    }
  });

  it('makes a call stable when the sink gives it a promise that already resolved for the calls before it', async () => {
    const settled = Promise.resolve();
    const agent = await recorder('settled', { append: () => settled });
    try {
      const s = await open(agent);
      s.send(hello('p', ShimMode.RECORD));
      s.send({ type: 'call', call: call(1, CallKind.GETPID, 42n) });
      s.send({ type: 'wait', callNo: 1 });
      expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 1 });
      s.send({ type: 'call', call: call(2, CallKind.GETPID, 42n) });
      s.send({ type: 'wait', callNo: 2 });
      expect(await s.next()).to.deep.equal({ type: 'stable', callNo: 2 });
      expect(agent.counters.unstable).to.equal(0);
    } finally {
      await agent.close();
    }
  });

  it('closes a recording stream when a promise its calls share rejects, leaving none of them counted unstable', async () => {
    const b = batchSink();
    const agent = await recorder('batch-refused', b.sink);
    try {
      const s = await open(agent);
      s.send(hello('p', ShimMode.RECORD));
      for (let n = 1; n <= 3; n++) s.send({ type: 'call', call: call(n, CallKind.GETPID, 42n) });
      s.send({ type: 'wait', callNo: 3 });
      await until(() => b.appended.length === 3);
      b.reject(new FtcpError(ErrorCode.STALE_EPOCH, 'epoch 3 is over'));
      expect(await s.next()).to.deep.include({ type: 'error', code: ErrorCode.STALE_EPOCH });
      expect(await s.next()).to.equal(null);
      expect(agent.stableCallNo('p')).to.equal(0);
      expect(agent.counters.unstable).to.equal(0);
      expect(agent.counters.sinkFailures).to.equal(1);
    } finally {
      await agent.close();
    }
  });

  it('refuses a second live connection for the same stream', async () => {
    const a = await open(primary);
    a.send(hello('p', ShimMode.RECORD));
    a.send({ type: 'call', call: call(1, CallKind.GETPID, 7n) });
    a.send({ type: 'wait', callNo: 1 });
    await a.next();
    const b = await open(primary);
    b.send(hello('p', ShimMode.RECORD));
    expect(await b.next()).to.deep.include({ type: 'error', code: NswErrorCode.DUPLICATE_STREAM });
  });

  it('reports a record it cannot decode as bad input, not as a divergence', async () => {
    await sink.append('p', 1, Buffer.from([1, 2, 3]));
    const s = await open(replica);
    s.send(hello('p', ShimMode.PLAYBACK));
    s.send({ type: 'play', call: call(1, CallKind.GETPID, 0n) });
    expect(await s.next()).to.deep.include({ type: 'error', code: ErrorCode.MALFORMED_FRAME });
    expect(replica.counters.divergences).to.equal(0);
  });

  describe('lock order (FT-TCP 3.8)', () => {
    const D = 0x5eedn;
    const FLOCK_EX = 0x10002n;
    const FLOCK_UN = 0x10008n;
    const EAGAIN = 11;
    const lockRec = (arg: bigint, attempt: number, grant: number, result = 0n): Buffer =>
      encodeCallData(call(1, CallKind.LOCK, result, { arg, payload: encodeLockPosition({ domain: D, attempt, grant }) }));
    const play = (n: number, arg: bigint): NswMessage => ({ type: 'play', call: call(n, CallKind.LOCK, 0n, { arg }) });
    const done = (n: number, arg: bigint, result: bigint, errno = 0, flags = 0): NswMessage => ({ type: 'done', call: call(n, CallKind.LOCK, result, { arg, errno, flags }) });

    it('answers a lock call only once every lower position was performed, and lets a contended call\'s grant run only after the holder\'s release', async () => {
      // a: lock (1), unlock (3). b: a blocking lock whose attempt (2) was contended, granted at 4.
      await sink.append('a', 1, lockRec(FLOCK_EX, 1, 0));
      await sink.append('a', 2, lockRec(FLOCK_UN, 3, 0));
      await sink.append('b', 1, lockRec(FLOCK_EX, 2, 4));
      const a = await open(replica);
      a.send(hello('a', ShimMode.PLAYBACK));
      const b = await open(replica);
      b.send(hello('b', ShimMode.PLAYBACK));
      b.send(play(1, FLOCK_EX));
      expect(await b.next(150)).to.equal(null);
      a.send(play(1, FLOCK_EX));
      expect(await a.next()).to.deep.include({ type: 'result' });
      expect(await b.next(150)).to.equal(null);
      a.send(done(1, FLOCK_EX, 0n));
      expect(await b.next()).to.deep.include({ type: 'result' });
      // b's attempt found the lock held, as the primary's did; its grant waits for a's unlock.
      b.send(done(1, FLOCK_EX, -1n, EAGAIN, CallFlag.TRY));
      expect(await b.next(150)).to.equal(null);
      a.send(play(2, FLOCK_UN));
      expect(await a.next()).to.deep.include({ type: 'result' });
      a.send(done(2, FLOCK_UN, 0n));
      const go = await b.next();
      expect(go).to.deep.include({ type: 'result' });
      expect((go as Extract<NswMessage, { type: 'result' }>).call.callNo).to.equal(1);
      b.send(done(1, FLOCK_EX, 0n));
      b.send({ type: 'play', call: call(2, CallKind.GETPID, 0n) });
      await sink.append('b', 2, encodeCallData(call(2, CallKind.GETPID, 5n)));
      expect(await b.next()).to.deep.include({ type: 'result' });
      expect(replica.canTakeOver).to.equal(true);
    });

    it('reports a lock outcome other than the primary\'s as a divergence', async () => {
      await sink.append('a', 1, lockRec(FLOCK_EX, 1, 0));
      const a = await open(replica);
      a.send(hello('a', ShimMode.PLAYBACK));
      a.send(play(1, FLOCK_EX));
      await a.next();
      a.send(done(1, FLOCK_EX, -1n, EAGAIN));
      expect(await a.next()).to.deep.include({ type: 'error', code: NswErrorCode.DIVERGENCE });
      expect(replica.canTakeOver).to.equal(false);
    });

    it('refuses a DONE nobody owes as a protocol error', async () => {
      const a = await open(replica);
      a.send(hello('a', ShimMode.PLAYBACK));
      a.send(done(1, FLOCK_EX, 0n));
      expect(await a.next()).to.deep.include({ type: 'error', code: NswErrorCode.PROTOCOL_STATE });
    });

    it('skips lock positions lost with the primary once it went live and no stream can perform them, and says so', async () => {
      // Positions 1..4 were taken by calls whose records never became stable.
      await sink.append('p', 1, lockRec(FLOCK_EX, 5, 0));
      const gaps: unknown[] = [];
      replica.on('lock-gap', (g: unknown) => gaps.push(g));
      const p = await open(replica);
      p.send(hello('p', ShimMode.PLAYBACK));
      p.send(play(1, FLOCK_EX));
      expect(await p.next(200)).to.equal(null);
      replica.goLive(new Map([['p', 1]]), new MemoryRecordSink());
      expect(await p.next(1000)).to.deep.include({ type: 'result' });
      expect(gaps).to.deep.equal([{ domain: D, from: 1, to: 4 }]);
    });
  });
});

describe('NswAgent playback from a queue (RECORDS, PLAYED)', function () {
  this.timeout(10000);
  let tmp: ReturnType<typeof tempDir>;
  let sink: MemoryRecordSink;
  let replica: NswAgent;
  let divergences: Divergence[];
  const shims: FakeShim[] = [];
  const peerSockaddr = Buffer.from([2, 0, 0x9c, 0x40, 10, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
  const keyBytes = Buffer.alloc(8);
  keyBytes.writeBigUInt64LE(sendHash(peerSockaddr));
  const client = Buffer.from('hello, server');
  const hashOf = (b: Buffer): Buffer => {
    const h = Buffer.alloc(8);
    h.writeBigUInt64LE(sendHash(b));
    return h;
  };
  const fetch = (callNo: number, kind: number, extra: Partial<CallBody> = {}): NswMessage => ({ type: 'play', call: call(callNo, kind, 0n, { flags: CallFlag.FETCH, ...extra }) });
  const append = async (stream: string, ...recs: CallBody[]): Promise<void> => {
    for (const r of recs) await sink.append(stream, r.callNo, encodeCallData(r));
  };
  const shim = async (name: string): Promise<FakeShim> => {
    const s = await FakeShim.open(replica.options.socketPath);
    shims.push(s);
    s.send(hello(name, ShimMode.PLAYBACK));
    return s;
  };
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

  beforeEach(async () => {
    tmp = tempDir('queue');
    sink = new MemoryRecordSink();
    replica = new NswAgent({
      socketPath: join(tmp.dir, 'r.sock'), mode: 'playback', source: sink,
      instream: { readInstream: async (_peer, offset, length) => client.subarray(offset, offset + length) },
    });
    divergences = [];
    replica.on('divergence', (d: Divergence) => divergences.push(d));
    await replica.listen();
  });
  afterEach(async () => {
    for (const s of shims.splice(0)) s.close();
    await replica.close();
    tmp.remove();
  });

  it('answers a FETCH with every record it has, in one batch, and counts them played only as the shim says it answered them', async () => {
    await append('p', call(1, CallKind.GETPID, 4242n), call(2, CallKind.TIME, 1700000000n), call(3, CallKind.GETTID, 4243n));
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    const batch = (await p.next()) as Extract<NswMessage, { type: 'records' }>;
    expect(batch.type).to.equal('records');
    expect(batch.first).to.equal(1);
    expect(batch.records.map((r) => [r.kind, r.result, r.flags])).to.deep.equal([[CallKind.GETPID, 4242n, 0], [CallKind.TIME, 1700000000n, 0], [CallKind.GETTID, 4243n, 0]]);
    expect(replica.counters.batches).to.equal(1);
    expect(replica.counters.played).to.equal(0);
    p.send({ type: 'played', consumed: 2, peeked: 0 });
    await settle();
    expect(replica.counters.played).to.equal(2);
    p.send({ type: 'played', consumed: 3, peeked: 0 });
    await settle();
    expect(replica.counters.played).to.equal(3);
  });

  it('sends a read\'s client bytes after its connection\'s key, and moves the replica\'s read position only once the read is answered', async () => {
    await append('p', call(1, CallKind.ACCEPT, 9n, { arg: 3n, payload: peerSockaddr }), call(2, CallKind.RECV, 5n, { arg: 4096n, payload: keyBytes }));
    const p = await shim('p');
    p.send(fetch(1, CallKind.ACCEPT, { arg: 3n }));
    const batch = (await p.next()) as Extract<NswMessage, { type: 'records' }>;
    expect(batch.records[1]!.payload.equals(Buffer.concat([keyBytes, Buffer.from('hello')]))).to.equal(true);
    expect(replica.replicatedConnections().map((c) => c.instreamOffset)).to.deep.equal([0]);
    p.send({ type: 'played', consumed: 2, peeked: 0 });
    await settle();
    expect(replica.replicatedConnections().map((c) => c.instreamOffset)).to.deep.equal([5]);
  });

  it('marks a lock SYNC, so the shim plays it with the agent in the primary\'s lock order', async () => {
    const lock = encodeLockPosition({ domain: 7n, attempt: 1, grant: 0 });
    await append('p', call(1, CallKind.GETPID, 1n), call(2, CallKind.LOCK, 0n, { arg: 0x10002n, payload: lock }), call(3, CallKind.GETPID, 1n));
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    const batch = (await p.next()) as Extract<NswMessage, { type: 'records' }>;
    expect(batch.records.map((r) => r.flags)).to.deep.equal([0, CallFlag.SYNC, 0]);
    p.send({ type: 'play', call: call(2, CallKind.LOCK, 0n, { arg: 0x10002n }) });
    expect(await p.next()).to.deep.include({ type: 'result' });
    p.send({ type: 'done', call: call(2, CallKind.LOCK, 0n, { arg: 0x10002n }) });
    p.send({ type: 'played', consumed: 3, peeked: 0 });
    await settle();
    expect(replica.counters.played).to.equal(3);
    expect(divergences).to.deep.equal([]);
  });

  it('keeps the bytes of a send the shim answered from its queue, once their hash is the primary\'s', async () => {
    await append('p', call(1, CallKind.ACCEPT, 9n, { arg: 3n, payload: peerSockaddr }), call(2, CallKind.SEND, 2n, { arg: 2n, payload: Buffer.concat([keyBytes, hashOf(Buffer.from('ok'))]) }));
    const p = await shim('p');
    p.send(fetch(1, CallKind.ACCEPT, { arg: 3n }));
    expect(await p.next()).to.deep.include({ type: 'records' });
    p.send({ type: 'done', call: call(2, CallKind.SEND, 2n, { arg: 2n, payload: Buffer.from('ok') }) });
    await settle();
    expect(replica.replicatedConnections().map((c) => c.unacked.toString())).to.deep.equal(['ok']);
    expect(replica.counters.played).to.equal(2);
  });

  it('takes the shim\'s word (CHECKED) that a send\'s bytes hash to the primary\'s, without hashing them again', async () => {
    await append('p', call(1, CallKind.ACCEPT, 9n, { arg: 3n, payload: peerSockaddr }), call(2, CallKind.SEND, 2n, { arg: 2n, payload: Buffer.concat([keyBytes, hashOf(Buffer.from('ok'))]) }));
    const p = await shim('p');
    p.send(fetch(1, CallKind.ACCEPT, { arg: 3n }));
    expect(await p.next()).to.deep.include({ type: 'records' });
    // Other bytes, vouched for: only a shim that hashed them would say so, and this one is the test's.
    p.send({ type: 'done', call: call(2, CallKind.SEND, 2n, { arg: 2n, flags: CallFlag.CHECKED, payload: Buffer.from('no') }) });
    await settle();
    expect(divergences).to.deep.equal([]);
    expect(replica.replicatedConnections().map((c) => c.unacked.toString())).to.deep.equal(['no']);
  });

  it('reports a divergence when a send answered from the queue moved other bytes than the primary\'s', async () => {
    await append('p', call(1, CallKind.ACCEPT, 9n, { arg: 3n, payload: peerSockaddr }), call(2, CallKind.SEND, 2n, { arg: 2n, payload: Buffer.concat([keyBytes, hashOf(Buffer.from('ok'))]) }));
    const p = await shim('p');
    p.send(fetch(1, CallKind.ACCEPT, { arg: 3n }));
    expect(await p.next()).to.deep.include({ type: 'records' });
    p.send({ type: 'done', call: call(2, CallKind.SEND, 2n, { arg: 2n, payload: Buffer.from('no') }) });
    expect(await p.next()).to.deep.include({ type: 'error', code: NswErrorCode.DIVERGENCE });
    expect(divergences.map((d) => d.callNo)).to.deep.equal([2]);
  });

  it('reports the divergence of a queued call the shim found not to match its record, as for any PLAY', async () => {
    await append('p', call(1, CallKind.GETPID, 1n), call(2, CallKind.GETPID, 1n));
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    expect(await p.next()).to.deep.include({ type: 'records' });
    p.send({ type: 'play', call: call(2, CallKind.TIME, 0n) });
    expect(await p.next()).to.deep.include({ type: 'error', code: NswErrorCode.DIVERGENCE });
    expect(divergences.map((d) => d.reason)).to.deep.equal(['the primary called getpid, the replica time']);
    expect(replica.canTakeOver).to.equal(false);
  });

  it('refuses a PLAYED past the records it sent, and a FETCH while records are queued', async () => {
    await append('p', call(1, CallKind.GETPID, 1n), call(2, CallKind.GETPID, 1n));
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    expect(await p.next()).to.deep.include({ type: 'records' });
    p.send({ type: 'played', consumed: 3, peeked: 0 });
    expect(await p.next()).to.deep.include({ type: 'error', code: NswErrorCode.PROTOCOL_STATE });
    const q = await shim('q');
    await append('q', call(1, CallKind.GETPID, 1n), call(2, CallKind.GETPID, 1n));
    q.send(fetch(1, CallKind.GETPID));
    expect(await q.next()).to.deep.include({ type: 'records' });
    q.send(fetch(1, CallKind.GETPID));
    expect(await q.next()).to.deep.include({ type: 'error', code: NswErrorCode.PROTOCOL_STATE });
  });

  it('sends no record past a stream\'s last stable call once it went live, and makes the call after it live', async () => {
    await append('p', ...[1, 2, 3, 4, 5].map((n) => call(n, CallKind.GETPID, 1n)));
    replica.goLive(new Map([['p', 2]]), new MemoryRecordSink());
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    const batch = (await p.next()) as Extract<NswMessage, { type: 'records' }>;
    expect(batch.records).to.have.length(2);
    p.send(fetch(3, CallKind.GETPID));
    const live = (await p.next()) as Extract<NswMessage, { type: 'result' }>;
    expect(live.call.flags).to.equal(CallFlag.LIVE);
    expect(replica.liveStreams()).to.deep.equal(['p']);
  });

  it('makes a FETCH waiting past the log live when the agent goes live', async () => {
    await append('p', call(1, CallKind.GETPID, 1n));
    const p = await shim('p');
    p.send(fetch(1, CallKind.GETPID));
    expect(await p.next()).to.deep.include({ type: 'records' });
    p.send(fetch(2, CallKind.GETPID));
    expect(await p.next(200)).to.equal(null);
    replica.goLive(new Map([['p', 1]]), new MemoryRecordSink());
    expect(((await p.next()) as Extract<NswMessage, { type: 'result' }>).call.flags).to.equal(CallFlag.LIVE);
  });
});

describe('NswAgent promotion (ADOPT, REBUILD, ADOPTED)', function () {
  this.timeout(10000);
  let tmp: ReturnType<typeof tempDir>;
  let sink: MemoryRecordSink;
  const shims: FakeShim[] = [];
  const agents: NswAgent[] = [];

  /** The client 10.0.0.7:40000 as the shim records its sockaddr_in; the key is its FNV-1a hash. */
  const peerSockaddr = Buffer.from([2, 0, 0x9c, 0x40, 10, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
  const key = sendHash(peerSockaddr);
  const keyBytes = Buffer.alloc(8);
  keyBytes.writeBigUInt64LE(key);
  const client = Buffer.from('GET /a\nGET /b\n');
  const state: TcpRebuildState = {
    localAddress: '10.0.0.1', localPort: 6379, peerAddress: '10.0.0.7', peerPort: 40000, sndUna: 1000, rcvNxt: 5000, mss: 1448,
    sndWscale: 7, rcvWscale: 7, sackOk: true, timestamps: true, tsVal: 77, peerWindow: 65535, ourWindow: 65535,
  };

  /** A RebuildSource that keeps each snapshot it was given and plans from it as a backup would. */
  class RecordingSource implements RebuildSource {
    readonly seen: ReplicatedConnection[] = [];
    async plan(conn: ReplicatedConnection): Promise<RebuildPlan> {
      this.seen.push(conn);
      return { state, inq: client.subarray(conn.instreamOffset), outq: conn.unacked };
    }
  }

  /**
   * Stream p accepted the connection (call 1); thread p/t1 read 7 of its
   * bytes (call 1). A replica agent holding those records, going live after them.
   */
  async function promoted(rebuild?: RebuildSource, adoptWaitMs?: number): Promise<{ agent: NswAgent; reports: RebuildReport[] }> {
    await sink.append('p', 1, encodeCallData(call(1, CallKind.ACCEPT, 9n, { arg: 3n, payload: peerSockaddr })));
    await sink.append('p/t1', 1, encodeCallData(call(1, CallKind.RECV, 7n, { arg: 4088n, payload: keyBytes })));
    const agent = new NswAgent({
      socketPath: join(tmp.dir, `a${agents.length}.sock`),
      mode: 'playback',
      source: sink,
      instream: { readInstream: async (_peer, offset, length) => client.subarray(offset, offset + length) },
      ...(rebuild ? { rebuild } : {}),
      ...(adoptWaitMs !== undefined ? { adoptWaitMs } : {}),
    });
    agents.push(agent);
    const reports: RebuildReport[] = [];
    agent.on('rebuilt', (r: RebuildReport) => reports.push(r));
    await agent.listen();
    return { agent, reports };
  }

  const open = async (agent: NswAgent, name: string): Promise<FakeShim> => {
    const s = await FakeShim.open(agent.options.socketPath);
    shims.push(s);
    s.send(hello(name, ShimMode.PLAYBACK));
    return s;
  };

  /** Plays p's accept, goes live at p's call 2 and asks for the connection with key `adoptKey`. */
  async function liveAndAdopt(agent: NswAgent, sink: MemoryRecordSink, adoptKey = key, beforeLive?: () => Promise<void>): Promise<FakeShim> {
    const p = await open(agent, 'p');
    p.send({ type: 'play', call: call(1, CallKind.ACCEPT, 0n, { arg: 3n }) });
    expect(await p.next()).to.deep.include({ type: 'result' });
    await beforeLive?.();
    agent.goLive(new Map([['p', 1], ['p/t1', 1]]), sink);
    p.send({ type: 'play', call: call(2, CallKind.GETPID, 0n) });
    expect(((await p.next()) as Extract<NswMessage, { type: 'result' }>).call.flags).to.equal(CallFlag.LIVE);
    p.send({ type: 'adopt', fd: 9, key: adoptKey });
    return p;
  }

  /** p/t1 reads its 7 bytes (after p's accept) and ends: it consumed its records (ending before would be a divergence). */
  async function t1Done(agent: NswAgent): Promise<void> {
    const t1 = await open(agent, 'p/t1');
    t1.send({ type: 'play', call: call(1, CallKind.RECV, 0n, { arg: 4088n, payload: keyBytes }) });
    expect(await t1.next()).to.deep.include({ type: 'result' });
    t1.close();
  }

  beforeEach(() => {
    tmp = tempDir('adopt');
    sink = new MemoryRecordSink();
  });
  afterEach(async () => {
    for (const s of shims.splice(0)) s.close();
    for (const a of agents.splice(0)) await a.close();
    tmp.remove();
  });

  it('answers ADOPT only after the other streams of the process consumed their records, with a plan from their final positions', async () => {
    const source = new RecordingSource();
    const { agent, reports } = await promoted(source);
    const p = await liveAndAdopt(agent, sink);
    // p/t1 has not even started: its read of the connection is still to come.
    expect(await p.next(300)).to.equal(null);
    const t1 = await open(agent, 'p/t1');
    expect(await p.next(200)).to.equal(null);
    t1.send({ type: 'play', call: call(1, CallKind.RECV, 0n, { arg: 4088n, payload: keyBytes }) });
    const read = (await t1.next()) as Extract<NswMessage, { type: 'result' }>;
    expect(read.call.payload.toString()).to.equal('GET /a\n');
    const rebuild = await p.next();
    expect(rebuild).to.deep.include({ type: 'rebuild', state });
    // The bytes t1 took are not in the receive queue again.
    expect((rebuild as Extract<NswMessage, { type: 'rebuild' }>).inq.toString()).to.equal('GET /b\n');
    expect(source.seen.map((c) => c.instreamOffset)).to.deep.equal([7]);

    p.send({ type: 'adopted', fd: 9, newFd: 9, key, errno: 0, step: AdoptStep.NONE, stepName: '' });
    await until(() => reports.length === 1);
    expect(reports[0]).to.deep.equal({ stream: 'p', fd: 9, key, peer: { family: 'ipv4', address: '10.0.0.7', port: 40000 }, ok: true, step: 0 });
    expect(agent.counters.rebuilt).to.equal(1);
  });

  it('counts a stream that disconnected as done with its records', async () => {
    const { agent } = await promoted(new RecordingSource());
    const t1 = await open(agent, 'p/t1');
    const p = await liveAndAdopt(agent, sink);
    expect(await p.next(200)).to.equal(null);
    t1.close();
    expect(await p.next()).to.deep.include({ type: 'rebuild' });
  });

  it('refuses ADOPT with FTCP_ERR_NOT_AVAILABLE when it has no RebuildSource, and the stream goes on recording', async () => {
    const { agent, reports } = await promoted(undefined);
    const p = await liveAndAdopt(agent, sink, key, () => t1Done(agent));
    const refused = await p.next();
    expect(refused).to.deep.include({ type: 'error', code: ErrorCode.NOT_AVAILABLE });
    expect((refused as Extract<NswMessage, { type: 'error' }>).message).to.contain('10.0.0.7:40000').and.to.contain('no RebuildSource');
    p.send({ type: 'adopted', fd: 9, newFd: -1, key, errno: 0, step: AdoptStep.AGENT, stepName: 'agent' });
    await until(() => reports.length === 1);
    expect(reports[0]).to.include({ stream: 'p', fd: 9, ok: false, step: AdoptStep.AGENT });
    expect(reports[0]!.error).to.match(/^refused by the agent: FTCP_ERR_NOT_AVAILABLE: /);
    expect(agent.counters.rebuildFailed).to.equal(1);
    // Not closed: the live stream's next call is recorded and made stable.
    p.send({ type: 'call', call: call(2, CallKind.GETPID, 5n) });
    p.send({ type: 'wait', callNo: 2 });
    expect(await p.next()).to.deep.equal({ type: 'stable', callNo: 2 });
  });

  /** What is wrong, the source, the key p adopts, what p does next (after its first answer when given), the code of the ERROR. */
  const refusals: [string, () => RebuildSource, bigint, ((p: FakeShim) => Promise<void>) | null, string][] = [
    ['a connection no accept replayed', () => new RecordingSource(), key + 1n, null, ErrorCode.UNKNOWN_CONNECTION],
    ['a connection whose plan failed', () => ({ plan: () => Promise.reject(new FtcpError(ErrorCode.CONFLICT, 'the views disagree')) }), key, null, NswErrorCode.REBUILD_FAILED],
    [
      'a connection whose plan is for another client',
      () => ({ plan: async (c: ReplicatedConnection) => ({ state: { ...state, peerPort: 1 }, inq: Buffer.alloc(0), outq: c.unacked }) }),
      key,
      null,
      NswErrorCode.REBUILD_FAILED,
    ],
    [
      'a connection adopted before (two processes hold it after a fork)',
      () => new RecordingSource(),
      key,
      async (p) => {
        expect(await p.next()).to.deep.include({ type: 'rebuild' });
        p.send({ type: 'adopt', fd: 9, key });
      },
      ErrorCode.CONFLICT,
    ],
  ];
  for (const [what, source, adoptKey, then, code] of refusals) {
    it(`refuses ADOPT of ${what} with ${code} and keeps the stream`, async () => {
      const { agent } = await promoted(source());
      const p = await liveAndAdopt(agent, sink, adoptKey, () => t1Done(agent));
      if (then) await then(p);
      expect(await p.next()).to.deep.include({ type: 'error', code });
      expect(await p.next(100)).to.equal(null);
      expect(p.closed).to.equal(false);
    });
  }

  it('refuses ADOPT with FTCP_ERR_TIMEOUT, naming the streams still replaying, after adoptWaitMs', async () => {
    const { agent } = await promoted(new RecordingSource(), 150);
    const p = await liveAndAdopt(agent, sink);
    const refused = await p.next(2000);
    expect(refused).to.deep.include({ type: 'error', code: ErrorCode.TIMEOUT });
    expect((refused as Extract<NswMessage, { type: 'error' }>).message).to.contain('streams p/t1 had not consumed their records');
  });

  it('refuses ADOPT before goLive as a protocol error and closes that connection', async () => {
    const { agent } = await promoted(new RecordingSource());
    const p = await open(agent, 'p');
    p.send({ type: 'adopt', fd: 9, key });
    expect(await p.next()).to.deep.include({ type: 'error', code: NswErrorCode.PROTOCOL_STATE });
    expect(await p.next()).to.equal(null);
  });
});

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
