import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { NswAgent } from '../src/agent.js';
import { CallKind, FrameSplitter, ShimMode, decodeMessage, encodeMessage, type CallBody, type NswMessage } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { sleep, tempDir, until } from './helpers.js';

/** The least a shim does for output commit: HELLO, CALLs, WAIT, and reading the answers. */
class WaitingShim {
  private readonly splitter = new FrameSplitter();
  readonly inbox: NswMessage[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      for (const f of this.splitter.push(d)) this.inbox.push(decodeMessage(f));
    });
  }

  static async open(path: string, name: string): Promise<WaitingShim> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once('error', reject);
    });
    const shim = new WaitingShim(socket);
    shim.send({ type: 'hello', pid: 1, ppid: 0, mode: ShimMode.RECORD, name });
    return shim;
  }

  send(msg: NswMessage): void {
    this.socket.write(encodeMessage(msg));
  }

  /** One recorded call, then the WAIT a send on a replicated connection makes before it leaves. */
  callThenWait(callNo: number): void {
    const call: CallBody = { callNo, kind: CallKind.GETPID, flags: 0, errno: 0, result: 42n, arg: 0n, payload: Buffer.alloc(0) };
    this.send({ type: 'call', call });
    this.send({ type: 'wait', callNo });
  }

  answered(callNo: number): boolean {
    return this.inbox.some((m) => m.type === 'stable' && m.callNo >= callNo);
  }
}

describe('NswAgent output-commit stall', function () {
  this.timeout(10_000);
  let tmp: ReturnType<typeof tempDir>;
  let sink: MemoryRecordSink;
  let agent: NswAgent;
  const shims: WaitingShim[] = [];
  const open = async (name: string): Promise<WaitingShim> => {
    const s = await WaitingShim.open(agent.options.socketPath, name);
    shims.push(s);
    return s;
  };

  beforeEach(async () => {
    tmp = tempDir('stall');
    sink = new MemoryRecordSink();
    agent = new NswAgent({ socketPath: join(tmp.dir, 'p.sock'), mode: 'record', sink });
    await agent.listen();
  });
  afterEach(async () => {
    sink.release();
    for (const s of shims.splice(0)) s.socket.destroy();
    await agent.close();
    tmp.remove();
  });

  it('reports no stall when every WAIT finds its records stable already', async () => {
    const s = await open('p');
    s.callThenWait(1);
    await until(() => s.answered(1));
    expect(agent.oldestStallMs()).to.equal(0);
    expect(agent.takeLongestStallMs()).to.be.below(50);
  });

  it('reports how long the oldest held send has waited, across streams, until its records are stable', async () => {
    sink.hold();
    const first = await open('first');
    first.callThenWait(1);
    await until(() => agent.counters.unstable === 1);
    await sleep(150);
    const second = await open('second');
    second.callThenWait(1);
    await until(() => agent.counters.unstable === 2);
    // The first stream's WAIT is the older: its age, not the second's, is the stall.
    expect(agent.oldestStallMs()).to.be.at.least(140);
    expect(first.answered(1)).to.equal(false);
    sink.release();
    await until(() => first.answered(1) && second.answered(1));
    expect(agent.oldestStallMs()).to.equal(0);
  });

  it('reports the longest stall since the previous read once, then starts again', async () => {
    sink.hold();
    const s = await open('p');
    s.callThenWait(1);
    await until(() => agent.counters.unstable === 1);
    await sleep(120);
    sink.release();
    await until(() => s.answered(1));
    expect(agent.takeLongestStallMs()).to.be.at.least(110);
    expect(agent.takeLongestStallMs()).to.be.below(50);
  });

  it('counts a held send that is still waiting as the longest stall so far', async () => {
    sink.hold();
    const s = await open('p');
    s.callThenWait(1);
    await until(() => agent.counters.unstable === 1);
    await sleep(100);
    expect(agent.takeLongestStallMs()).to.be.at.least(90);
  });

  it('stops counting the stall of a thread whose shim connection closed', async () => {
    sink.hold();
    const s = await open('p');
    s.callThenWait(1);
    await until(() => agent.counters.unstable === 1);
    await sleep(20);
    expect(agent.oldestStallMs()).to.be.above(0);
    s.socket.destroy();
    await until(() => agent.counters.open === 0);
    expect(agent.oldestStallMs()).to.equal(0);
  });
});
