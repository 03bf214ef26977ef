import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isFtcpError, ReplicaFeed, StableBufferClient, StableBufferServer } from '@ftcp/stable-buffer';
import type { AdoptedConnection } from '../src/conntable.js';
import { SswErrorCode } from '../src/errors.js';
import { GO_LIVE_DUPLICATE_ACKS, Recorder, windowChangedNotably, type AckStrategy, type RecordedPacket, type RecorderOptions } from '../src/recorder.js';
import { SouthSideWrap } from '../src/wrap.js';
import { parseTcpPacket } from '../src/wire/tcp.js';
import type { TcpPacket } from '../src/wire/tcp.js';
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
  /** `through`: one batch verdict accepting every waiting packet up to `id`. */
  verdict: 'accept' | 'drop' | 'through';
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

  let others: StableBufferClient[];
  let replicaFeed: ReplicaFeed | undefined;

  async function startBuffer(): Promise<void> {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-rec-'));
    server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'memory' });
    seen = [];
    injected = [];
    nextId = 1;
    others = [];
    replicaFeed = undefined;
  }

  function makeRecorder(ack: AckStrategy, extra: Partial<RecorderOptions> = {}): Recorder {
    return new Recorder({
      wrap: new SouthSideWrap({ mode: 'record' }),
      buffer: client,
      ack,
      verdicts: {
        accept: (id, o) => seen.push({ id, verdict: 'accept', ...(o?.payload ? { payload: Buffer.from(o.payload) } : {}) }),
        drop: (id) => seen.push({ id, verdict: 'drop' }),
      },
      injector: { send: (p) => injected.push(Buffer.from(p)) },
      clientAckEveryMs: 1,
      ...extra,
    });
  }

  async function setup(ack: AckStrategy): Promise<void> {
    await startBuffer();
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await client.attachAsWriter();
    recorder = makeRecorder(ack);
  }

  /** A client of the buffer besides the writer, closed after the test. */
  function otherClient(node: string): StableBufferClient {
    const c = StableBufferClient.connect({ endpoint: server.endpoint, node });
    others.push(c);
    return c;
  }

  /** What a backup would read from the buffer. */
  function observe(): ReplicaFeed {
    const o = otherClient('observer');
    replicaFeed = new ReplicaFeed(o, o.subscribe({ mode: 'observer' }));
    return replicaFeed;
  }

  afterEach(async () => {
    recorder?.close();
    await replicaFeed?.close();
    for (const o of others ?? []) o.close();
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

  /** The client's FIN, the server's, the last ACK: the close is logged. */
  async function closeBothWays(): Promise<void> {
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | FIN, options: [opt.nop(), opt.nop(), opt.timestamps(103, 900)] }));
    feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 2) >>> 0, flags: ACK | FIN, options: [opt.nop(), opt.nop(), opt.timestamps(902, 103)] })));
    feed(IN, buildPacket({ seq: (CISN + 2) >>> 0, ack: SISN + 2, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(104, 902)] }));
    await until(() => recorder.counters.closesLogged === 1, 2000, 'the close');
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

  it('accepts a batch\'s unchanged packets with one batch verdict, in order, never past a held packet', async () => {
    await startBuffer();
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await client.attachAsWriter();
    recorder = makeRecorder('lazy', {
      verdicts: {
        accept: (id, o) => seen.push({ id, verdict: 'accept', ...(o?.payload ? { payload: Buffer.from(o.payload) } : {}) }),
        drop: (id) => seen.push({ id, verdict: 'drop' }),
        acceptThrough: (id) => seen.push({ id, verdict: 'through' }),
      },
    });
    const packet = (hook: number, payload: Buffer): RecordedPacket => ({ id: nextId++, hook, payload, checksumPartial: false, truncatedOk: true });
    // A segment of a connection the wrap does not know: accepted unchanged.
    const stray = (): RecordedPacket => packet(IN, buildPacket({ seq: 77, ack: 88, flags: ACK, srcPort: 50000 }));
    const syn = packet(IN, buildPacket({ seq: CISN, flags: SYN, options: synOpts }));
    const synAck = packet(OUT, buildPacket(fromServer({ seq: SISN, ack: CISN + 1, flags: SYN | ACK, options: [opt.mss(1460), opt.sackPermitted(), opt.timestamps(900, 100), opt.nop(), opt.wscale(7)] })));
    recorder.handle([syn, synAck]);
    // The SYN's batch verdict goes before the SYN-ACK is held, and covers only the SYN.
    expect(seen).to.deep.equal([{ id: syn.id, verdict: 'through' }]);
    // While the SYN-ACK waits in the queue, a batch verdict would accept it too: each packet gets its own.
    const [a, b] = [stray(), stray()];
    recorder.handle([a, b]);
    expect(seen.slice(1)).to.deep.equal([
      { id: a.id, verdict: 'accept' },
      { id: b.id, verdict: 'accept' },
    ]);
    await until(() => verdictOf(synAck.id) !== undefined, 5000, 'the SYN-ACK verdict');
    expect(verdictOf(synAck.id)!.verdict).to.equal('accept');
    seen = [];
    const ts = [opt.nop(), opt.nop(), opt.timestamps(101, 900)];
    const ack = packet(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK, options: ts }));
    const data = packet(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'not yet stable', options: ts }));
    // The kernel acks the data at once: clamped to stable-seq, so rewritten.
    const kernelAck = packet(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 1 + 14) >>> 0, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(901, 101)] })));
    const c = stray();
    recorder.handle([ack, data, kernelAck, c]);
    expect(seen.map((x) => [x.id, x.verdict])).to.deep.equal([
      [data.id, 'through'],
      [kernelAck.id, 'accept'],
      [c.id, 'through'],
    ]);
    expect(seen[1]!.payload, 'the rewritten bytes').to.not.equal(undefined);
  });

  it('sends no ACK of its own under the lazy strategy', async () => {
    await setup('lazy');
    await handshake();
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'lazy', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    await until(() => recorder.counters.segmentsLogged === 1, 2000, 'the segment to be logged');
    await new Promise((r) => setTimeout(r, 100));
    expect(injected).to.have.length(0);
  });

  it('sends one ACK of its own a delay after the buffer logs bytes under the delayed strategy, covering what was logged meanwhile', async () => {
    await startBuffer();
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await client.attachAsWriter();
    recorder = makeRecorder('delayed', { delayedAckMs: 200 });
    await handshake();
    const t0 = performance.now();
    const ts = (v: number) => [opt.nop(), opt.nop(), opt.timestamps(v, 900)];
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'one', options: ts(102) }));
    feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 4) >>> 0, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(901, 102)] })));
    await until(() => recorder.counters.segmentsLogged === 1, 2000, 'the first segment to be logged');
    feed(IN, buildPacket({ seq: (CISN + 4) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'two', options: ts(103) }));
    feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 7) >>> 0, flags: ACK, options: [opt.nop(), opt.nop(), opt.timestamps(902, 103)] })));
    await until(() => injected.length > 0, 5000, 'an injected ACK');
    expect(performance.now() - t0, 'the ACK waited for the delay').to.be.at.least(190);
    await new Promise((r) => setTimeout(r, 300));
    expect(injected, 'one ACK for both segments').to.have.length(1);
    const ack = parseTcpPacket(injected[0]!, {});
    expect(ack.ok && ack.packet.ack).to.equal((CISN + 7) >>> 0);
  });

  it('lets a client segment reach the kernel only once the buffer has logged it under the hold strategy, in order, and sends no ACK of its own', async () => {
    await setup('hold');
    await handshake();
    const ts = [opt.nop(), opt.nop(), opt.timestamps(102, 900)];
    const first = feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'first ', options: ts }));
    const second = feed(IN, buildPacket({ seq: (CISN + 7) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'second', options: ts }));
    // A bare ACK carries nothing to log: it goes at once.
    const bare = feed(IN, buildPacket({ seq: (CISN + 13) >>> 0, ack: SISN + 1, flags: ACK, options: ts }));
    expect(verdictOf(first)).to.equal(undefined);
    expect(verdictOf(second)).to.equal(undefined);
    expect(verdictOf(bare)!.verdict).to.equal('accept');
    await until(() => verdictOf(second) !== undefined, 5000, 'the held segments');
    expect(seen.filter((x) => x.id === first || x.id === second).map((x) => [x.id, x.verdict])).to.deep.equal([
      [first, 'accept'],
      [second, 'accept'],
    ]);
    const connId = ((await client.status()).connections as { connId: number }[])[0]!.connId;
    expect((await client.readInstream(connId, 0, 12)).toString()).to.equal('first second');
    await new Promise((r) => setTimeout(r, 50));
    expect(injected).to.have.length(0);
  });

  it('drops a held segment whose write failed under the hold strategy, so the client resends it', async () => {
    await setup('hold');
    await handshake();
    client.close();
    const held = feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'unlogged', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    await until(() => verdictOf(held) !== undefined, 5000, 'the verdict of a segment whose write failed');
    expect(verdictOf(held)!.verdict).to.equal('drop');
    expect(recorder.counters.logFailures).to.be.at.least(1);
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
    await closeBothWays();
    await until(() => ((server.status().connections as { closed: boolean }[])[0]?.closed ?? false), 2000, 'the close record');
    const c = (server.status().connections as { stableOffset: number }[])[0]!;
    expect(c.stableOffset).to.equal(1); // the FIN's one sequence number
  });

  it('logs a new connection on the four-tuple of one closed moments before, and releases its SYN-ACK', async () => {
    await setup('eager');
    await handshake();
    await closeBothWays();
    // The client reuses its port at once (RFC 9293 3.6.1 lets a SYN with a higher ISN reopen it).
    const isn2 = (CISN + 100_000) >>> 0;
    feed(IN, buildPacket({ seq: isn2, flags: SYN, options: [opt.mss(1460), opt.sackPermitted(), opt.timestamps(200, 0), opt.nop(), opt.wscale(7)] }));
    const synAck = feed(OUT, buildPacket(fromServer({ seq: 90_000, ack: (isn2 + 1) >>> 0, flags: SYN | ACK, options: [opt.mss(1460), opt.sackPermitted(), opt.timestamps(950, 200), opt.nop(), opt.wscale(7)] })));
    await until(() => verdictOf(synAck) !== undefined, 3000, "the new connection's SYN-ACK verdict");
    expect(verdictOf(synAck)!.verdict).to.equal('accept');
    expect(recorder.counters.connectionsLogged).to.equal(2);
    expect(recorder.packetsHeld, 'no packet left without a verdict').to.equal(0);
    const ids = (server.status().connections as { connId: number }[]).map((c) => c.connId);
    expect(new Set(ids).size, 'a buffer connection of its own').to.equal(2);
  });

  it("logs the client's highest TSecr and its window in bytes with its ack, and a TSecr that moved alone", async () => {
    await setup('eager');
    await handshake();
    const f = observe();
    const connId = ((await client.status()).connections as { connId: number }[])[0]!.connId;
    feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 1) >>> 0, flags: ACK | PSH, payload: 'reply', options: [opt.nop(), opt.nop(), opt.timestamps(906, 101)] })));
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 6, flags: ACK, window: 300, options: [opt.nop(), opt.nop(), opt.timestamps(102, 906)] }));
    await until(() => f.connection(connId)?.clientAckOffset === 5, 5000, 'the client ack record');
    expect(f.connection(connId)!.clientTsEcr).to.equal(906);
    // The window reaches the highest right edge the client advertised (its
    // handshake ACK: 65535 units of 128 from the SYN-ACK's ack), in bytes.
    expect(f.connection(connId)!.clientWindow).to.equal(65535 * 128 - 5);
    // The server sends a bare ACK with a newer TSval; the client's next segment echoes it, acking nothing new.
    feed(OUT, buildPacket(fromServer({ seq: SISN + 6, ack: (CISN + 1) >>> 0, flags: ACK, window: 600, options: [opt.nop(), opt.nop(), opt.timestamps(950, 102)] })));
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 6, flags: ACK, window: 301, options: [opt.nop(), opt.nop(), opt.timestamps(103, 950)] }));
    await until(() => f.connection(connId)?.clientTsEcr === 950, 5000, 'the TSecr-only client ack record');
    const logged = recorder.counters.clientAcksLogged;
    // A window that moved by one unit and an older TSecr say nothing new.
    feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 6, flags: ACK, window: 302, options: [opt.nop(), opt.nop(), opt.timestamps(104, 940)] }));
    await new Promise((r) => setTimeout(r, 50));
    expect(recorder.counters.clientAcksLogged).to.equal(logged);
    expect(f.connection(connId)!.clientTsEcr).to.equal(950);
  });

  it('says nothing while muted, still logs client bytes, and acknowledges them once unmuted', async () => {
    await setup('eager');
    await handshake();
    recorder.mute(true);
    const data = feed(IN, buildPacket({ seq: (CISN + 1) >>> 0, ack: SISN + 1, flags: ACK | PSH, payload: 'quiet', options: [opt.nop(), opt.nop(), opt.timestamps(102, 900)] }));
    const reply = feed(OUT, buildPacket(fromServer({ seq: SISN + 1, ack: (CISN + 6) >>> 0, flags: ACK | PSH, payload: 'reply', options: [opt.nop(), opt.nop(), opt.timestamps(901, 102)] })));
    expect(verdictOf(reply)!.verdict).to.equal('drop');
    await until(() => verdictOf(data) !== undefined && recorder.counters.segmentsLogged === 1, 5000, 'the segment to be logged');
    await new Promise((r) => setTimeout(r, 50));
    expect(injected, 'an ACK crafted while muted').to.have.length(0);
    expect(recorder.counters.mutedDrops).to.equal(1);
    recorder.mute(false);
    expect(injected).to.have.length(1);
    const ack = parseTcpPacket(injected[0]!, {});
    expect(ack.ok && ack.packet.ack).to.equal((CISN + 6) >>> 0);
  });

  it('drops every packet once closed, failing closed', async () => {
    await setup('lazy');
    recorder.close();
    const id = feed(IN, buildPacket({ seq: CISN, flags: SYN, options: synOpts }));
    expect(verdictOf(id)!.verdict).to.equal('drop');
  });
});

describe('windowChangedNotably', () => {
  const cases: Array<[number | undefined, number, boolean]> = [
    [undefined, 1000, true],
    [1000, 1000, false],
    [1000, 1200, false],
    [1000, 1250, true],
    [1000, 700, true],
    [1000, 0, true],
    [0, 1, true],
    [0, 0, false],
  ];
  for (const [logged, now, notable] of cases) {
    it(`${notable ? 'logs' : 'skips'} a window of ${now} after ${logged ?? 'none'}`, () => {
      expect(windowChangedNotably(logged, now)).to.equal(notable);
    });
  }
});

describe('Recorder with adopted connections', function () {
  this.timeout(20_000);
  const CONN = 7;
  const A_CISN = 0xfffffffa; // the client's stream crosses 2^32 at offset 5
  const A_SISN = 0x10000;
  let dir: string;
  let server: StableBufferServer;
  let oldPrimary: StableBufferClient;
  let backup: StableBufferClient;
  let recorder: Recorder;
  let wrap: SouthSideWrap;
  let seen: Seen[];
  let injected: Buffer[];
  let nextId: number;

  const ts = (val: number, ecr: number): number[][] => [opt.nop(), opt.nop(), opt.timestamps(val, ecr)];
  const cseq = (offset: number): number => (A_CISN + 1 + offset) >>> 0;
  const sseq = (offset: number): number => (A_SISN + 1 + offset) >>> 0;

  /** The old primary logs a connection and 'hello'; the backup takes the next epoch. */
  async function promoted(extra: Partial<RecorderOptions> = {}, wrapOpts: { maxEntries?: number } = {}): Promise<AdoptedConnection> {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-adopt-'));
    server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'memory' });
    oldPrimary = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
    await oldPrimary.attachAsWriter();
    const rec = {
      connId: CONN,
      clientIp: CLIENT.addr,
      serverIp: SERVER.addr,
      clientPort: CLIENT.port,
      serverPort: SERVER.port,
      clientIsn: A_CISN,
      serverIsn: A_SISN,
      mss: 1460,
      clientWscale: 7,
      serverWscale: 7,
      sackOk: true,
      timestamps: true,
      clientTsval: 100,
      serverTsval: 900,
    };
    await oldPrimary.writeConn(rec);
    await oldPrimary.writeSegment({ connId: CONN, offset: 0, flags: 0, payload: Buffer.from('hello') });
    backup = StableBufferClient.connect({ endpoint: server.endpoint, node: 'backup' });
    const { epoch } = await backup.promote(1);
    await backup.attachAsWriter(epoch);
    seen = [];
    injected = [];
    nextId = 1;
    wrap = new SouthSideWrap({ mode: 'record', ...wrapOpts });
    recorder = new Recorder({
      wrap,
      buffer: backup,
      ack: 'eager',
      verdicts: {
        accept: (id, o) => seen.push({ id, verdict: 'accept', ...(o?.payload ? { payload: Buffer.from(o.payload) } : {}) }),
        drop: (id) => seen.push({ id, verdict: 'drop' }),
      },
      injector: { send: (p) => injected.push(Buffer.from(p)) },
      clientAckEveryMs: 1,
      ...extra,
    });
    return { rec, stableOffset: 5, clientAckOffset: 0, clientWindow: 500 * 128, clientTsEcr: 900 };
  }

  afterEach(async () => {
    recorder?.close();
    oldPrimary?.close();
    backup?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function feed(hook: number, payload: Buffer): number {
    const p: RecordedPacket = { id: nextId++, hook, payload, checksumPartial: false, truncatedOk: true };
    recorder.handle([p]);
    return p.id;
  }
  const verdictOf = (id: number): Seen | undefined => seen.find((s) => s.id === id);
  const parsed = (b: Buffer): TcpPacket => {
    const r = parseTcpPacket(b);
    if (!r.ok) throw new Error(r.reason);
    return r.packet;
  };

  it('answers a pending connection with zero-window ACKs, rate-limited, and keeps a silent client alive', async () => {
    const a = await promoted({ zeroWindowAckGapMs: 40, pendingKeepaliveMs: 60 });
    recorder.adopt([a]);
    expect(recorder.pending).to.equal(1);
    const world = buildPacket({ seq: cseq(5), ack: sseq(0), flags: ACK | PSH, payload: 'world', options: ts(120, 905) });
    const first = feed(IN, world);
    const second = feed(IN, Buffer.from(world));
    const beyond = feed(IN, buildPacket({ seq: cseq(10), ack: sseq(0), flags: ACK | PSH, payload: 'later', options: ts(121, 905) }));
    const logged = feed(IN, buildPacket({ seq: cseq(0), ack: sseq(0), flags: ACK | PSH, payload: 'hello', options: ts(121, 905) }));
    // The latest segment at stable-seq waits in the queue for the rebuilt socket; the one it replaced and any other are dropped.
    expect(verdictOf(first)!.verdict).to.equal('drop');
    expect(verdictOf(second)).to.equal(undefined);
    expect(verdictOf(beyond)!.verdict).to.equal('drop');
    expect(verdictOf(logged)!.verdict, 'bytes all below stable-seq').to.equal('drop');
    // A resend from below stable-seq that carries it replaces the held one.
    const straddling = feed(IN, buildPacket({ seq: cseq(3), ack: sseq(0), flags: ACK | PSH, payload: 'loworld', options: ts(122, 905) }));
    expect(verdictOf(second)!.verdict).to.equal('drop');
    expect(verdictOf(straddling)).to.equal(undefined);
    expect(injected).to.have.length(1);
    const z = parsed(injected[0]!);
    expect(z.window).to.equal(0);
    expect(z.ack).to.equal(cseq(5));
    expect(z.seq).to.equal(sseq(0));
    expect(z.options.tsVal).to.equal(905);
    expect(z.options.tsEcr).to.equal(120);
    // Nothing was logged: the kernel never saw the bytes, the client sends them again.
    expect(recorder.counters.segmentsLogged).to.equal(0);
    await until(() => injected.length >= 3, 2000, 'keep-alives to a silent client');
    for (const k of injected) expect(parsed(k).window).to.equal(0);
    expect(recorder.counters.zeroWindowAcks).to.equal(injected.length);
  });

  it('answers every adopted client at once when asked (the VIP has moved), not only at the next keep-alive tick, and not twice within the gap', async () => {
    const a = await promoted({ zeroWindowAckGapMs: 40, pendingKeepaliveMs: 60_000 });
    recorder.adopt([a]);
    expect(injected, 'nothing before the VIP is ours').to.have.length(0);
    recorder.keepPendingAlive();
    expect(injected).to.have.length(1);
    const z = parsed(injected[0]!);
    expect(z.window).to.equal(0);
    expect(z.ack).to.equal(cseq(5));
    recorder.keepPendingAlive();
    expect(injected, 'rate-limited like any zero-window ACK').to.have.length(1);
  });

  it('goes live at the rebuilt socket\'s first segment: a window update and duplicates, the held segment delivered and logged to the old buffer connection', async () => {
    const a = await promoted({ pendingKeepaliveMs: 60_000 });
    recorder.adopt([a]);
    const held = feed(IN, buildPacket({ seq: cseq(5), ack: sseq(0), flags: ACK | PSH, payload: 'world', options: ts(120, 905) }));
    expect(verdictOf(held)).to.equal(undefined);
    expect(injected).to.have.length(1);
    // Leaving TCP_REPAIR, the rebuilt socket probes: seq snd_una - 1.
    const probe = feed(OUT, buildPacket(fromServer({ seq: sseq(-1), ack: cseq(5), window: 400, options: ts(1000, 120) })));
    expect(verdictOf(probe)!.verdict).to.equal('accept');
    expect(recorder.pending).to.equal(0);
    const burst = injected.slice(1);
    expect(burst).to.have.length(1 + GO_LIVE_DUPLICATE_ACKS);
    for (const b of burst) expect(b.equals(burst[0]!), 'identical duplicates').to.equal(true);
    const w = parsed(burst[0]!);
    expect(w.ack).to.equal(cseq(5));
    expect(w.window).to.be.at.least(400);
    expect(w.options.tsVal).to.equal(1000);
    expect(recorder.counters.goLiveAcks).to.equal(1 + GO_LIVE_DUPLICATE_ACKS);
    // The held segment goes to the rebuilt socket, without waiting for the
    // client's next retransmission, and to the old primary's buffer connection.
    expect(verdictOf(held)!.verdict).to.equal('accept');
    expect(recorder.counters.headsDelivered).to.equal(1);
    // The rebuilt kernel acknowledges at once; the client hears it once the buffer holds the bytes.
    feed(OUT, buildPacket(fromServer({ seq: sseq(0), ack: cseq(10), window: 400, options: ts(1001, 120) })));
    await until(() => recorder.counters.segmentsLogged === 1 && injected.length > 1 + burst.length, 5000, 'the segment logged and acknowledged');
    expect((await backup.readInstream(CONN, 0, 10)).toString()).to.equal('helloworld');
    expect(parsed(injected.at(-1)!).ack).to.equal(cseq(10));
    expect(recorder.stableOffsets()).to.deep.equal([{ connId: CONN, stableOffset: 10 }]);
  });

  it('gives up a pending connection: forgotten, logged closed, its next segment left to the kernel', async () => {
    const a = await promoted();
    recorder.adopt([a]);
    const held = feed(IN, buildPacket({ seq: cseq(5), ack: sseq(0), flags: ACK | PSH, payload: 'world', options: ts(120, 905) }));
    expect(recorder.releasePending(CONN)).to.equal(true);
    expect(verdictOf(held)!.verdict, 'the held segment, with no socket to go to').to.equal('drop');
    expect(recorder.releasePending(CONN)).to.equal(false);
    expect(wrap.table.size).to.equal(0);
    const id = feed(IN, buildPacket({ seq: cseq(5), ack: sseq(0), flags: ACK, options: ts(120, 905) }));
    expect(verdictOf(id)!.verdict).to.equal('accept');
    expect(wrap.counters.unknownConnection).to.equal(1);
    await until(() => ((server.status().connections as { connId: number; closed: boolean }[]).find((c) => c.connId === CONN)?.closed ?? false), 2000, 'the close record');
  });

  it('refuses to adopt a four-tuple twice, with FTCP_ERR_CONFLICT, and changes nothing', async () => {
    const a = await promoted();
    let caught: unknown;
    try {
      recorder.adopt([a, { ...a, rec: { ...a.rec, connId: CONN + 1 } }]);
    } catch (err) {
      caught = err;
    }
    expect(isFtcpError(caught, ErrorCode.CONFLICT), String(caught)).to.equal(true);
    expect(wrap.table.size).to.equal(0);
    recorder.adopt([a]);
    expect(() => recorder.adopt([a])).to.throw().with.property('code', ErrorCode.CONFLICT);
  });

  it('refuses more connections than the table holds, with FTCP_ERR_TABLE_FULL, and adopts none', async () => {
    const a = await promoted({}, { maxEntries: 1 });
    const other = { ...a, rec: { ...a.rec, connId: CONN + 1, clientPort: CLIENT.port + 1 } };
    expect(() => recorder.adopt([a, other])).to.throw().with.property('code', SswErrorCode.TABLE_FULL);
    expect(wrap.table.size).to.equal(0);
    expect(recorder.counters.adopted).to.equal(0);
  });

  it('refuses to adopt without an injector, with FTCP_ERR_BAD_CONFIG', async () => {
    const a = await promoted();
    const lazy = new Recorder({ wrap: new SouthSideWrap(), buffer: backup, ack: 'lazy', verdicts: { accept: () => undefined, drop: () => undefined } });
    expect(() => lazy.adopt([a])).to.throw().with.property('code', ErrorCode.BAD_CONFIG);
    lazy.close();
  });
});
