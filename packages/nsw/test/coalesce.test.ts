/**
 * Coalesced records (record mode): a thread's CALL frames wait in its buffer
 * and one write carries many, but they leave before anything could need
 * them: before the thread blocks in a call the shim sees, at an output
 * commit (every thread's), at exec and at exit.
 */
import { expect } from 'chai';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { NswAgent, shimPath } from '../src/index.js';
import { callKindName, decodeCallData } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { compileC, quiet, run, shimEnv, sleep, tempDir, until } from './helpers.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when the child printed `line` (a whole line), with everything it printed so far. */
function printed(child: ChildProcessWithoutNullStreams, line: string, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no "${line}" within ${ms} ms: ${out}`)), ms);
    const onData = (d: string): void => {
      out += d;
      if (out.split('\n').includes(line)) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve();
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
  });
}

describe('coalesced records', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let prog: string;
  let sink: MemoryRecordSink;
  let agent: NswAgent;

  before(() => {
    tmp = tempDir('coalesce');
    prog = compileC('coalesce', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());
  beforeEach(async () => {
    sink = new MemoryRecordSink();
    agent = new NswAgent({ socketPath: join(tmp.dir, 'agent.sock'), mode: 'record', sink });
    await agent.listen();
  });
  afterEach(() => agent.close());

  const start = (args: string[], extra: Record<string, string> = {}): ChildProcessWithoutNullStreams =>
    spawn(prog, args, { env: { ...process.env, ...shimEnv(shimPath(), 'record', agent.options.socketPath), ...extra }, stdio: ['pipe', 'pipe', 'pipe'] });
  const kinds = (stream: string): string[] => sink.records(stream).map((r) => callKindName(decodeCallData(r).kind));

  it('keeps a thread\'s records in its buffer until a flush point (nanosleep), then sends them', async () => {
    const child = start(['hold']);
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await printed(child, 'recorded');
    // The program waits in a call the shim does not see: its ten records are still in its buffer.
    await sleep(300);
    expect(sink.records('srv')).to.have.length(0);
    expect(agent.counters.recorded).to.equal(0);
    // nanosleep is a flush point: all ten arrive, while the program waits again.
    await printed(child, 'slept');
    await until(() => sink.records('srv').length === 10, 2000);
    expect(kinds('srv')).to.deep.equal(Array(10).fill('clock_gettime'));
    expect(await exited).to.equal(0);
  });

  it('sends a thread\'s records before it blocks in poll, so they are stable while it waits', async () => {
    const child = start(['poll']);
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await printed(child, 'recorded');
    await until(() => sink.records('srv').length === 1, 1000);
    expect(agent.stableCallNo('srv')).to.equal(1);
    expect(child.exitCode).to.equal(null);
    expect(await exited).to.equal(0);
    await quiet(agent);
    expect(kinds('srv')).to.deep.equal(['clock_gettime', 'poll', 'end']);
  });

  it('sends every thread\'s records, not only the writer\'s, before output leaves on a replicated connection', async () => {
    const port = await freePort();
    const child = start(['commit', String(port)], { FTCP_NSW_PORT: String(port) });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await printed(child, 'listening');
    // The reader thread read the clock and waits on a condition variable: no flush point of its own.
    expect(sink.records('srv/t1')).to.have.length(0);
    const sock = connect(port, '127.0.0.1');
    sock.write('x\n');
    const seenAtReply = await new Promise<string[]>((resolve) => sock.once('data', () => resolve(kinds('srv/t1'))));
    // Its END may follow once the reply woke it; the clock read was there before the reply left.
    expect(seenAtReply.slice(0, 1)).to.deep.equal(['clock_gettime']);
    sock.destroy();
    expect(await exited).to.equal(0);
  });

  it('sends the records of an image that execs, and of one that ends with _exit', async () => {
    const r = await run(prog, ['exec'], shimEnv(shimPath(), 'record', agent.options.socketPath));
    expect(r.code).to.equal(3);
    await quiet(agent);
    expect(kinds('srv')).to.deep.equal(['clock_gettime']);
    // _exit ends its stream with END; exec does not end the stream's records that way (the image goes on as srv/e).
    expect(kinds('srv/e')).to.deep.equal(['clock_gettime', 'end']);
  });
});
