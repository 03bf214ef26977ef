import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { NswAgent, type Divergence } from '../src/agent.js';
import { ErrorCode, FtcpError, NswErrorCode } from '../src/errors.js';
import { CallFlag, CallKind, FrameSplitter, ShimMode, decodeMessage, encodeCallData, encodeMessage, type CallBody, type NswMessage } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
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
    ['a frame of an unknown type', [Buffer.from([1, 0x42, 0, 0, 0, 0, 0, 0])], 'record', ErrorCode.UNKNOWN_TYPE],
    ['a CALL before HELLO', [{ type: 'call', call: call(1, CallKind.GETPID, 1n) }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a HELLO in the wrong mode', [hello('p', ShimMode.PLAYBACK)], 'record', NswErrorCode.WRONG_MODE],
    ['a CALL that skips a call number', [hello('p', ShimMode.RECORD), { type: 'call', call: call(2, CallKind.GETPID, 1n) }], 'record', NswErrorCode.OUT_OF_ORDER],
    ['a WAIT for a call never sent', [hello('p', ShimMode.RECORD), { type: 'wait', callNo: 5 }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a PLAY sent to a record agent', [hello('p', ShimMode.RECORD), { type: 'play', call: call(1, CallKind.GETPID, 1n) }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a message only the agent sends', [hello('p', ShimMode.RECORD), { type: 'stable', callNo: 1 }], 'record', NswErrorCode.PROTOCOL_STATE],
    ['a truncated call body', [hello('p', ShimMode.RECORD), Buffer.from([1, 2, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0])], 'record', ErrorCode.TRUNCATED_FRAME],
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
});
