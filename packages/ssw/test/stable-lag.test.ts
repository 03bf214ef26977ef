import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableBufferClient, StableBufferServer } from '@ftcp/stable-buffer';
import { Recorder, type RecordedPacket } from '../src/recorder.js';
import { SouthSideWrap } from '../src/wrap.js';
import { buildPacket, fromServer, opt, CLIENT } from './support/builder.js';

const IN = 0; // PRE_ROUTING
const OUT = 3; // LOCAL_OUT
const SYN = 0x02;
const ACK = 0x10;
const PSH = 0x08;
const CISN = 0xfffffff0; // the client's sequence numbers wrap past 2^32
const SISN = 5000;
const synOpts = [opt.mss(1460), opt.sackPermitted(), opt.timestamps(100, 0), opt.nop(), opt.wscale(7)];
const ts = [opt.nop(), opt.nop(), opt.timestamps(102, 900)];

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('Recorder stable-seq lag', function () {
  this.timeout(20_000);
  let dir: string;
  let server: StableBufferServer;
  let client: StableBufferClient;
  let recorder: Recorder;
  let accepted: Set<number>;
  let nextId: number;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-lag-'));
    server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'memory' });
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await client.attachAsWriter();
    accepted = new Set();
    nextId = 1;
    recorder = new Recorder({
      wrap: new SouthSideWrap({ mode: 'record' }),
      buffer: client,
      ack: 'lazy',
      verdicts: { accept: (id) => accepted.add(id), drop: () => {} },
    });
  });

  afterEach(async () => {
    recorder.close();
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function feed(hook: number, payload: Buffer): number {
    const p: RecordedPacket = { id: nextId++, hook, payload, checksumPartial: false, truncatedOk: true };
    recorder.handle([p]);
    return p.id;
  }

  /** A client at `port` connects; resolves once its record is stable and the handshake is done. */
  async function connectClient(port: number): Promise<void> {
    feed(IN, buildPacket({ srcPort: port, seq: CISN, flags: SYN, options: synOpts }));
    const synAck = feed(OUT, buildPacket(fromServer({ dstPort: port, seq: SISN, ack: CISN + 1, flags: SYN | ACK, options: [opt.mss(1460), opt.sackPermitted(), opt.timestamps(900, 100), opt.nop(), opt.wscale(7)] })));
    await until(() => accepted.has(synAck), 5000, 'the SYN-ACK verdict');
    feed(IN, buildPacket({ srcPort: port, seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK, options: ts }));
  }

  /** Client bytes at `offset` of its stream (0 is the first byte after the SYN). */
  function clientBytes(port: number, offset: number, payload: string): void {
    feed(IN, buildPacket({ srcPort: port, seq: (CISN + 1 + offset) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload, options: ts }));
  }

  it('counts client bytes the buffer has not acknowledged as stable, and none once it has', async () => {
    await connectClient(CLIENT.port);
    const endpoint = server.endpoint;
    await server.close();
    clientBytes(CLIENT.port, 0, 'unlogged');
    const away = recorder.stableLag();
    expect(away.totalBytes).to.equal(8);
    expect(away.connections).to.have.length(1);
    expect(away.connections[0]).to.include({ client: '10.0.0.1:40000', lagBytes: 8 });
    // The buffer comes back on the same data directory: the resent write is acknowledged.
    server = await StableBufferServer.start({ listen: endpoint, dataDir: dir, durability: 'memory' });
    await until(() => recorder.stableLag().totalBytes === 0, 5000, 'the lag to go');
    expect(recorder.stableOffsets()[0]!.stableOffset).to.equal(8);
  });

  it('counts the bytes beyond a hole, up to the furthest one received, until the hole is filled', async () => {
    await connectClient(CLIENT.port);
    clientBytes(CLIENT.port, 10, 'later');
    await until(() => recorder.counters.segmentsLogged === 1 && client.unacknowledged === 0, 5000, 'the write beyond the hole to be acknowledged');
    // The buffer holds the 5 bytes beyond a hole of 10: stable-seq stays at 0, 15 bytes of sequence behind.
    expect(recorder.stableLag().totalBytes).to.equal(15);
    clientBytes(CLIENT.port, 0, '0123456789');
    await until(() => recorder.stableLag().totalBytes === 0, 5000, 'the hole to be filled');
    expect(recorder.stableOffsets()[0]!.stableOffset).to.equal(15);
  });

  it('lists the connections that lag most first, at most as many as asked, with what each client acknowledged', async () => {
    const [lagging, current] = [CLIENT.port, CLIENT.port + 1];
    // Connected second, so its buffer connection id is the higher: the order is by lag, not by id.
    await connectClient(current);
    await connectClient(lagging);
    clientBytes(current, 0, 'abcd');
    // The server answers `current` with 5 bytes and its client acknowledges them.
    feed(OUT, buildPacket(fromServer({ dstPort: current, seq: SISN + 1, ack: (CISN + 1 + 4) >>> 0, flags: ACK | PSH, payload: 'reply', options: [opt.nop(), opt.nop(), opt.timestamps(901, 102)] })));
    feed(IN, buildPacket({ srcPort: current, seq: (CISN + 1 + 4) >>> 0, ack: SISN + 6, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(103, 901)] }));
    clientBytes(lagging, 20, 'beyond');
    await until(() => recorder.counters.segmentsLogged === 2 && client.unacknowledged === 0, 5000, 'both writes to be acknowledged');

    const all = recorder.stableLag();
    expect(all.totalBytes).to.equal(26);
    expect(all.connections.map((c) => [c.client, c.lagBytes, c.clientAcked])).to.deep.equal([
      [`10.0.0.1:${lagging}`, 26, 0],
      [`10.0.0.1:${current}`, 0, 5],
    ]);
    const worst = recorder.stableLag(1);
    expect(worst.totalBytes, 'the total counts every connection, listed or not').to.equal(26);
    expect(worst.connections.map((c) => c.client)).to.deep.equal([`10.0.0.1:${lagging}`]);
    expect(worst.connections[0]!.connId).to.equal(recorder.stableOffsets().find((s) => s.stableOffset === 0)!.connId);
  });
});
