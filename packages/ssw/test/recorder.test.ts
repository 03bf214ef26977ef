import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableBufferClient, StableBufferServer } from '@ftcp/stable-buffer';
import { Recorder, type AckStrategy, type RecordedPacket } from '../src/recorder.js';
import { SouthSideWrap } from '../src/wrap.js';
import { parseTcpPacket } from '../src/wire/tcp.js';
import { buildPacket, fromServer, opt, CLIENT, SERVER } from './support/builder.js';

const IN = 0; // PRE_ROUTING
const OUT = 3; // LOCAL_OUT
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;
const PSH = 0x08;
const CISN = 0xfffffff0; // the client's sequence numbers wrap past 2^32
const SISN = 5000;

interface Seen {
  id: number;
  verdict: 'accept' | 'drop';
  payload?: Uint8Array;
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('Recorder', function () {
  this.timeout(20_000);
  let dir: string;
  let server: StableBufferServer;
  let client: StableBufferClient;
  let recorder: Recorder;
  let seen: Seen[];
  let injected: Buffer[];
  let nextId: number;

  async function setup(ack: AckStrategy): Promise<void> {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-rec-'));
    server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'memory' });
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await client.attachAsWriter();
    seen = [];
    injected = [];
    nextId = 1;
    recorder = new Recorder({
      wrap: new SouthSideWrap({ mode: 'record' }),
      buffer: client,
      ack,
      verdicts: {
        accept: (id, o) => seen.push({ id, verdict: 'accept', ...(o?.payload ? { payload: Buffer.from(o.payload) } : {}) }),
        drop: (id) => seen.push({ id, verdict: 'drop' }),
      },
      injector: { send: (p) => injected.push(Buffer.from(p)) },
      clientAckEveryMs: 1,
    });
  }

  afterEach(async () => {
    recorder?.close();
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function feed(hook: number, payload: Buffer): number {
    const p: RecordedPacket = { id: nextId++, hook, payload, checksumPartial: false, truncatedOk: true };
    recorder.handle([p]);
    return p.id;
  }

  const verdictOf = (id: number): Seen | undefined => seen.find((s) => s.id === id);
  const synOpts = [opt.mss(1460), opt.sackPermitted(), opt.timestamps(100, 0), opt.nop(), opt.wscale(7)];

  async function handshake(): Promise<void> {
    feed(IN, buildPacket({ seq: CISN, flags: SYN, options: synOpts }));
    const synAck = feed(OUT, buildPacket(fromServer({ seq: SISN, ack: CISN + 1, flags: SYN | ACK, options: [opt.mss(1460), opt.sackPermitted(), opt.timestamps(900, 100), opt.nop(), opt.wscale(7)] })));
    // Invariant 3: the SYN-ACK waits for the connection record.
    expect(verdictOf(synAck)).to.equal(undefined);
    await until(() => verdictOf(synAck) !== undefined, 5000, 'the SYN-ACK verdict');
    expect(verdictOf(synAck)!.verdict).to.equal('accept');
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(101, 900)] }));
  }

  it('holds the SYN-ACK until the connection record is stable, then logs ISNs and options', async () => {
    await setup('eager');
    await handshake();
    const conns = (await client.status()).connections as { connId: number }[];
    expect(conns).to.have.length(1);
    expect(recorder.counters.connectionsLogged).to.equal(1);
  });

  it('logs client bytes across the sequence wrap and acknowledges them only once they are stable', async () => {
    await setup('eager');
    await handshake();
    const data = feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'hello world, across the wrap', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    expect(verdictOf(data)!.verdict).to.equal('accept');
    // The kernel acknowledges at once; the buffer has not answered yet: the ack is held back.
    const kernelAck = feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 1 + 28) >>> 0, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(901, 102)] })));
    const v = verdictOf(kernelAck)!;
    if (v.verdict === 'accept') {
      // Let out only rewritten, with its ack clamped to stable-seq (invariant 1).
      expect(v.payload, 'the ACK was let out unchanged').to.not.equal(undefined);
      const sent = parseTcpPacket(v.payload!, {});
      expect(sent.ok && sent.packet.ack).to.equal((CISN + 1) >>> 0);
    }
    // Eager: once the buffer acknowledges, a fresh ACK for every stable byte goes out.
    await until(() => injected.length > 0, 5000, 'an injected ACK');
    const ack = parseTcpPacket(injected.at(-1)!, {});
    expect(ack.ok).to.equal(true);
    if (ack.ok) {
      expect(ack.packet.ack).to.equal((CISN + 1 + 28) >>> 0);
      expect(ack.packet.ip.src).to.equal(SERVER.addr);
      expect(ack.packet.dstPort).to.equal(CLIENT.port);
    }
    const connId = ((await client.status()).connections as { connId: number }[])[0]!.connId;
    expect((await client.readInstream(connId, 0, 28)).toString()).to.equal('hello world, across the wrap');
  });

  it('sends no ACK of its own under the lazy strategy', async () => {
    await setup('lazy');
    await handshake();
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'lazy', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    await until(() => recorder.counters.segmentsLogged === 1, 2000, 'the segment to be logged');
    await new Promise((r) => setTimeout(r, 100));
    expect(injected).to.have.length(0);
  });

  it('never acknowledges bytes the buffer has not logged while the buffer is away', async () => {
    await setup('eager');
    await handshake();
    const endpoint = server.endpoint;
    await server.close();
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'unlogged', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    const kernelAck = feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 1 + 8) >>> 0, flags: ACK, payload: 'reply', options: [opt.nop(), opt.nop(), opt.timestamps(901, 102)] })));
    const v = verdictOf(kernelAck)!;
    expect(v.verdict).to.equal('accept'); // it carries data, so it goes, with its ack held back
    const sent = parseTcpPacket(v.payload!, {});
    expect(sent.ok && sent.packet.ack).to.equal((CISN + 1) >>> 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(injected).to.have.length(0);
    // The buffer comes back on the same data directory: the resent segment is logged and acknowledged.
    server = await StableBufferServer.start({ listen: endpoint, dataDir: dir, durability: 'memory' });
    await until(() => injected.length > 0, 5000, 'the ACK after the buffer returned');
    const ack = parseTcpPacket(injected.at(-1)!, {});
    expect(ack.ok && ack.packet.ack).to.equal((CISN + 1 + 8) >>> 0);
  });

  it('logs the client\'s FIN and the connection\'s close', async () => {
    await setup('eager');
    await handshake();
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | FIN, options: [opt.nop(), opt.nop(), opt.timestamps(103, 900)] }));
    feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 2) >>> 0, flags: ACK | FIN, options: [opt.nop(), opt.nop(), opt.timestamps(902, 103)] })));
    feed(IN, buildPacket({ seq: (CISN + 2) >>> 0, ack: SISN + 2, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(104, 902)] }));
    await until(() => recorder.counters.closesLogged === 1, 2000, 'the close');
    await until(() => ((server.status().connections as { closed: boolean }[])[0]?.closed ?? false), 2000, 'the close record');
    const c = (server.status().connections as { stableOffset: number }[])[0]!;
    expect(c.stableOffset).to.equal(1); // the FIN's one sequence number
  });

  it('drops every packet once closed, failing closed', async () => {
    await setup('lazy');
    recorder.close();
    const id = feed(IN, buildPacket({ seq: CISN, flags: SYN, options: synOpts }));
    expect(verdictOf(id)!.verdict).to.equal('drop');
  });
});
