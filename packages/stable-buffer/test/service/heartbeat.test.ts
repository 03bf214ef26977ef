import { expect } from 'chai';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { Dealer } from 'zeromq';
import { ErrorCode } from '../../src/errors.js';
import { Heartbeat, type HeartbeatWorkerData, type HeartbeatWorkerEvent } from '../../src/heartbeat.js';
import { encodeFrame, Role } from '../../src/protocol/messages.js';
import { Harness, until } from './helpers.js';

/** A writer that says hello and then never answers a probe: a primary whose main thread is busy. */
async function silentWriter(endpoint: string, node: string, epoch: number): Promise<Dealer> {
  const d = new Dealer({ linger: 0 });
  d.connect(endpoint);
  await d.send(encodeFrame({ kind: 'hello', epoch, role: Role.WRITER, node }, 1));
  await d.receive();
  return d;
}

describe('the heartbeat thread', function () {
  this.timeout(20_000);
  let h: Harness;
  const closers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
    await h?.stop();
  });

  /** A heartbeat connected (its thread started, which takes a while) but not yet vouching for anyone. */
  async function heartbeat(node: string): Promise<Heartbeat> {
    const hb = new Heartbeat({ endpoint: h.server.endpoint, node });
    closers.push(() => hb.stop());
    await once(hb, 'connected');
    return hb;
  }

  async function attached(hb: Heartbeat, epoch: number): Promise<void> {
    const ok = once(hb, 'attached');
    hb.attach(epoch);
    await ok;
  }

  const failures = (): number => h.server.counters.failuresDeclared;

  it('keeps a primary alive while its heartbeat answers the probes its own connection leaves unanswered', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const hb = await heartbeat('primary');
    const writer = await silentWriter(h.server.endpoint, 'primary', 0);
    closers.push(() => writer.close());
    await attached(hb, 1);
    const probesBefore = h.server.counters.probes;
    await new Promise((r) => setTimeout(r, 400));
    expect(h.server.counters.probes - probesBefore, 'probes sent meanwhile').to.be.greaterThan(5);
    expect(failures(), 'failures declared').to.equal(0);
    // It was the heartbeat: without it the silent writer is declared failed.
    await hb.stop();
    await until(() => failures() === 1, 2000, 'the failure to be declared once the heartbeat stopped');
  });

  it('is refused for an epoch its node does not own, and its answers then count for nothing', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const writer = await silentWriter(h.server.endpoint, 'primary', 0);
    closers.push(() => writer.close());
    const hb = await heartbeat('impostor');
    hb.attach(1);
    const [refused] = (await once(hb, 'refused')) as [HeartbeatWorkerEvent & { kind: 'refused' }];
    expect(refused.code).to.equal(ErrorCode.STALE_EPOCH);
    await until(() => failures() === 1, 2000, 'the silent writer to be declared failed');
  });

  it('no longer vouches for anybody once a backup is promoted over its primary', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const hb = await heartbeat('primary');
    const oldWriter = await silentWriter(h.server.endpoint, 'primary', 0);
    closers.push(() => oldWriter.close());
    await attached(hb, 1);
    const backup = h.client('backup');
    const { epoch } = await backup.promote(1);
    expect(epoch).to.equal(2);
    // The promoted node's writer connection goes silent; the old heartbeat is still running.
    backup.close();
    const newWriter = await silentWriter(h.server.endpoint, 'backup', 2);
    closers.push(() => newWriter.close());
    await until(() => failures() === 1, 2000, 'the silent new primary to be declared failed');
  });

  it('says hello again to a restarted buffer, so its answers count there too', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30, durability: 'commit' });
    const endpoint = h.server.endpoint;
    const hb = await heartbeat('primary');
    const writer = await silentWriter(endpoint, 'primary', 0);
    closers.push(() => writer.close());
    await attached(hb, 1);
    await h.server.close();
    const attachedAgain = once(hb, 'attached');
    await h.start({ listen: endpoint, probeIntervalMs: 10, failureTimeoutMs: 30, durability: 'commit' });
    const writer2 = await silentWriter(endpoint, 'primary', 1);
    closers.push(() => writer2.close());
    await attachedAgain;
    await new Promise((r) => setTimeout(r, 300));
    expect(failures(), 'failures declared by the restarted buffer').to.equal(0);
  });

  it('stops answering when the main thread has not beaten for the stall limit, so a stuck primary is still declared failed', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    // The worker alone, with a beat counter the test moves and then stops moving: a main thread that gets stuck.
    const beats = new SharedArrayBuffer(4);
    const data: HeartbeatWorkerData = { endpoint: h.server.endpoint, node: 'primary', epoch: 0, curve: null, stallLimitMs: 200, beats };
    const beating = setInterval(() => Atomics.add(new Int32Array(beats), 0, 1), 10);
    const worker = new Worker(new URL('../../src/heartbeat-worker.js', import.meta.url), { workerData: data });
    const exited = once(worker, 'exit');
    closers.push(async () => {
      clearInterval(beating);
      worker.postMessage({ kind: 'stop' });
      await exited;
    });
    const events: HeartbeatWorkerEvent[] = [];
    worker.on('message', (ev: HeartbeatWorkerEvent) => events.push(ev));
    await until(() => events.some((e) => e.kind === 'connected'), 5000, 'the worker to connect');
    const writer = await silentWriter(h.server.endpoint, 'primary', 0);
    closers.push(() => writer.close());
    worker.postMessage({ kind: 'attach', epoch: 1 });
    await until(() => events.some((e) => e.kind === 'attached'), 2000, 'the hello to be accepted');
    clearInterval(beating);
    const t0 = performance.now();
    await until(() => failures() === 1, 3000, 'the failure to be declared');
    const stalled = events.find((e) => e.kind === 'stalled') as { ms: number } | undefined;
    expect(stalled, `events ${JSON.stringify(events)}`).to.not.equal(undefined);
    expect(stalled!.ms).to.be.at.least(200);
    // Answered through the limit, then silent for a failure timeout: not declared at once.
    expect(performance.now() - t0).to.be.greaterThan(150);
  });

  it('vouches for the epoch its client takes when the client becomes the writer after starting it', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const c = h.client('primary');
    const hb = c.startHeartbeat();
    expect(c.startHeartbeat(), 'one heartbeat per client').to.equal(hb);
    await once(hb, 'connected');
    const ok = once(hb, 'attached');
    await c.attachAsWriter();
    const [ev] = (await ok) as [{ epoch: number }];
    expect(ev.epoch).to.equal(1);
    c.close();
    await hb.stop();
  });

  it('ends with its client: the client\'s close resolves only once the thread is gone, so the process may exit', async () => {
    h = await new Harness().start({ probeIntervalMs: 10, failureTimeoutMs: 30 });
    const c = h.client('primary');
    const hb = c.startHeartbeat();
    await once(hb, 'connected');
    await c.attachAsWriter();
    await c.close();
    // An exit under a live thread holding a ZeroMQ socket aborted a stepping-down primary (SIGABRT).
    expect(hb.running).to.equal(false);
  });
});
