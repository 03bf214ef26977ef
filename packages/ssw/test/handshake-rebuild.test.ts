/**
 * The spoofed handshake that gives a new primary's kernel a connection the
 * old server never accepted (handshake-rebuild.ts): crafted packets only;
 * the e2e test `unaccepted.e2e` runs it against a real kernel.
 */
import { expect } from 'chai';
import type { AdoptedConnection } from '../src/conntable.js';
import { ConnTable } from '../src/conntable.js';
import { HANDSHAKE_REBUILD_CHUNK, HandshakeRebuild, type HandshakeRebuildInput, type HandshakeStep } from '../src/handshake-rebuild.js';
import { offsetToSeq, seq, seqAdd, u32Add } from '../src/wire/seq.js';
import { parseTcpPacket, TcpFlag, verifyTcpChecksum, type TcpPacket } from '../src/wire/tcp.js';
import { buildPacket, CLIENT, fromServer, opt, SERVER } from './support/builder.js';

// The client's sequence space crosses 2^32 inside the stream.
const CISN = 0xffffff00;
const SISN = 0x40000000; // the old primary's, which the client knows
const KISN = 0x9000_0000; // the new kernel's
const WSCALE = 7;
const KERNEL_TSVAL = 777;
const FIRST_TSVAL = 3_700_000;
const CLIENT_TSVAL = 123_456;

function adopted(rec: Partial<AdoptedConnection['rec']> = {}): AdoptedConnection {
  return {
    rec: {
      connId: 7, clientIp: CLIENT.addr, serverIp: SERVER.addr, clientPort: CLIENT.port, serverPort: SERVER.port,
      clientIsn: CISN, serverIsn: SISN, mss: 1460, clientWscale: WSCALE, serverWscale: WSCALE, sackOk: true, timestamps: true,
      clientTsval: 100, serverTsval: 900, ...rec,
    },
    stableOffset: 0, clientAckOffset: 0, clientWindow: 500 * 2 ** WSCALE, clientTsEcr: 0,
  };
}

function start(input: Partial<HandshakeRebuildInput> = {}, rec: Partial<AdoptedConnection['rec']> = {}) {
  const table = new ConnTable();
  const conn = table.adopt(adopted(rec))!;
  const full: HandshakeRebuildInput = { instream: Buffer.alloc(0), fin: false, firstTsVal: FIRST_TSVAL, clientWindow: 500 * 2 ** WSCALE, ...input };
  return { conn, rebuild: new HandshakeRebuild(conn, full, CLIENT_TSVAL) };
}

function parsed(b: Buffer): TcpPacket {
  const r = parseTcpPacket(b);
  if (!r.ok) throw new Error(`crafted packet does not parse: ${r.reason}`);
  expect(verifyTcpChecksum(r.packet), 'checksum').to.equal(true);
  return r.packet;
}

/** The kernel's SYN-ACK to the spoofed SYN (kernel view). */
function synAck(window = 65535, wscale: number | undefined = WSCALE): TcpPacket {
  const options = [opt.mss(1460), opt.sackPermitted(), opt.timestamps(KERNEL_TSVAL, CLIENT_TSVAL), ...(wscale === undefined ? [] : [opt.nop(), opt.wscale(wscale)])];
  return parsed(buildPacket(fromServer({ seq: KISN, ack: CISN + 1, flags: TcpFlag.SYN | TcpFlag.ACK, window, options })));
}

/** A bare ACK of the kernel (kernel view): everything up to client offset `offset`, window in scaled units. */
function kernelAck(offset: number, units: number): TcpPacket {
  return parsed(buildPacket(fromServer({ seq: KISN + 1, ack: offsetToSeq(offset, seq(CISN)), flags: TcpFlag.ACK, window: units, options: [opt.nop(), opt.nop(), opt.timestamps(KERNEL_TSVAL + 1, CLIENT_TSVAL)] })));
}

function ok(step: HandshakeStep): Extract<HandshakeStep, { ok: true }> {
  if (!step.ok) throw new Error(`step refused: ${step.reason}`);
  return step;
}

const clientSeq = (offset: number): number => offsetToSeq(offset, seq(CISN));

describe('a handshake rebuild', () => {
  it("spoofs the client's SYN from the connection record: its ISN, MSS, SACK, timestamps and window scale", () => {
    const { rebuild } = start();
    const syn = parsed(rebuild.syn());
    expect(syn.ip.src).to.equal(CLIENT.addr);
    expect(syn.ip.dst).to.equal(SERVER.addr);
    expect([syn.srcPort, syn.dstPort]).to.deep.equal([CLIENT.port, SERVER.port]);
    expect(syn.flags).to.equal(TcpFlag.SYN);
    expect(syn.seq).to.equal(CISN);
    expect(syn.options.mss).to.equal(1460);
    expect(syn.options.sackPermitted).to.equal(true);
    expect(syn.options.windowScale).to.equal(WSCALE);
    expect(syn.options.tsVal).to.equal(CLIENT_TSVAL);
  });

  it('offers no window scale when the old connection had none, so the kernel scales nothing', () => {
    const { rebuild } = start({}, { clientWscale: 0, serverWscale: 0 });
    expect(parsed(rebuild.syn()).options.windowScale).to.equal(undefined);
  });

  it("maps the kernel's ISN and TSvals to the old primary's, and completes the handshake at once", () => {
    const { conn, rebuild } = start();
    const step = ok(rebuild.onKernelSegment(synAck()));
    expect(step.established).to.equal(true);
    expect(step.done, 'no bytes: the probe goes with the ACK').to.equal(true);
    expect(seqAdd(seq(KISN), conn.deltas.seqDelta)).to.equal(SISN);
    expect(conn.deltas.ackDelta).to.equal(0);
    expect(u32Add(KERNEL_TSVAL, conn.deltas.tsOffset)).to.equal(FIRST_TSVAL);
    const [ack, probe] = step.packets.map(parsed);
    expect(ack!.flags).to.equal(TcpFlag.ACK);
    expect(ack!.seq).to.equal(clientSeq(0));
    expect(ack!.ack).to.equal(KISN + 1);
    expect(ack!.options.tsEcr).to.equal(KERNEL_TSVAL);
    expect(ack!.window).to.equal(500, "the client's window in its own scale");
    // One below the kernel's receive edge: unacceptable, so the kernel answers with an ACK at once.
    expect(probe!.seq).to.equal(clientSeq(-1));
    expect(probe!.payloadLength).to.equal(0);
  });

  it("gives the stable bytes only as far as the kernel's window reaches, and the rest as its ACKs open it", () => {
    const bytes = Buffer.alloc(100_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
    const { rebuild } = start({ instream: bytes, fin: true });
    // A new socket's first window: 65535 bytes, unscaled in the SYN-ACK.
    const first = ok(rebuild.onKernelSegment(synAck(65535)));
    const got: Buffer[] = [];
    const take = (packets: readonly Buffer[]): TcpPacket[] => {
      const ps = packets.map(parsed);
      for (const p of ps) if (p.payloadLength > 0) got.push(Buffer.from(p.buf.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength)));
      return ps;
    };
    const firstPs = take(first.packets.slice(1));
    expect(first.done).to.equal(false);
    expect(got.reduce((n, b) => n + b.length, 0)).to.equal(65535);
    expect(Math.max(...firstPs.map((p) => p.payloadLength))).to.be.at.most(HANDSHAKE_REBUILD_CHUNK);
    // The kernel acknowledges them and opens its window (scaled units now).
    const second = ok(rebuild.onKernelSegment(kernelAck(65535, 1024)));
    const ps = take(second.packets);
    expect(second.done).to.equal(true);
    expect(Buffer.concat(got).equals(bytes)).to.equal(true);
    const fin = ps.find((p) => p.flags & TcpFlag.FIN)!;
    expect(fin.seq).to.equal(clientSeq(bytes.length));
    expect(ps.at(-1)!.seq, 'the probe, below the edge past the FIN').to.equal(clientSeq(bytes.length));
    expect(ps.at(-1)!.flags).to.equal(TcpFlag.ACK);
  });

  it('waits without sending while the kernel keeps its window closed', () => {
    const { rebuild } = start({ instream: Buffer.alloc(10) });
    ok(rebuild.onKernelSegment(synAck(0)));
    const step = ok(rebuild.onKernelSegment(kernelAck(0, 0)));
    expect(step.packets).to.have.length(0);
    expect(step.done).to.equal(false);
  });

  it('refuses a kernel that chose another window scale than the client knows', () => {
    const { rebuild } = start();
    const step = rebuild.onKernelSegment(synAck(65535, 9));
    expect(step.ok).to.equal(false);
    if (!step.ok) expect(step.reason).to.match(/window scale 9, the client knows 7/);
  });

  it('ignores a retransmitted SYN-ACK once established', () => {
    const { rebuild } = start({ instream: Buffer.alloc(10) });
    ok(rebuild.onKernelSegment(synAck(0)));
    const again = ok(rebuild.onKernelSegment(synAck()));
    expect(again.packets).to.have.length(0);
    expect(again.established).to.equal(false);
  });
});
