/**
 * The SSW side of promotion: connections adopted from a dead primary, held
 * `pending` until their rebuilt socket speaks, then rewritten for a kernel
 * that may lag what the client has seen. Crafted packets only; the recorder
 * and the native parts have their own tests.
 */
import { expect } from 'chai';
import { isFtcpError } from '@ftcp/stable-buffer';
import type { AdoptedConnection, Connection } from '../src/conntable.js';
import { checkAdoptedConnection, ConnTable, incomingWindowShift, outgoingWindowShift, sackNegotiated, timestampsNegotiated } from '../src/conntable.js';
import { craftAck, craftedSeqNumber, craftedTsVal } from '../src/craft.js';
import { SswErrorCode } from '../src/errors.js';
import { offsetToSeq, seq, seqAdd, seqForward, seqLe } from '../src/wire/seq.js';
import { parseTcpPacket, TcpFlag, verifyTcpChecksum } from '../src/wire/tcp.js';
import type { TcpPacket } from '../src/wire/tcp.js';
import { SouthSideWrap } from '../src/wrap.js';
import type { Verdict } from '../src/wrap.js';
import { buildPacket, CLIENT, fromServer, opt, SERVER } from './support/builder.js';
import type { PacketSpec } from './support/builder.js';
import { handshake } from './support/handshake.js';

// Both sequence spaces cross 2^32 within the offsets used below.
const CISN = 0xffffffc0;
const SISN = 0xfffffe00;
const STABLE = 100; // client bytes the buffer holds
const CLIENT_ACKED = 500; // server bytes the client acknowledged, as logged
const WSCALE = 7;

function adopted(over: Partial<AdoptedConnection> = {}, rec: Partial<AdoptedConnection['rec']> = {}): AdoptedConnection {
  return {
    rec: {
      connId: 0x100000001,
      clientIp: CLIENT.addr,
      serverIp: SERVER.addr,
      clientPort: CLIENT.port,
      serverPort: SERVER.port,
      clientIsn: CISN,
      serverIsn: SISN,
      mss: 1460,
      clientWscale: WSCALE,
      serverWscale: WSCALE,
      sackOk: true,
      timestamps: true,
      clientTsval: 100,
      serverTsval: 900,
      ...rec,
    },
    stableOffset: STABLE,
    clientAckOffset: CLIENT_ACKED,
    clientWindow: 1000 * 2 ** WSCALE,
    clientTsEcr: 5000,
    ...over,
  };
}

/** Client-view sequence numbers of stream offsets. */
const clientSeq = (offset: number): number => offsetToSeq(offset, seq(CISN));
const serverSeq = (offset: number): number => offsetToSeq(offset, seq(SISN));

function accepted(v: Verdict): TcpPacket {
  if (v.verdict !== 'accept' || v.packet === undefined) throw new Error(`expected accept, got ${JSON.stringify(v)}`);
  const r = parseTcpPacket(v.packet.buf);
  if (!r.ok) throw new Error(r.reason);
  expect(verifyTcpChecksum(r.packet), 'checksum after rewrite').to.equal(true);
  return r.packet;
}

function parse(b: Uint8Array): TcpPacket {
  const r = parseTcpPacket(b);
  if (!r.ok) throw new Error(r.reason);
  expect(verifyTcpChecksum(r.packet)).to.equal(true);
  return r.packet;
}

/** A wrap holding one adopted connection, still pending. */
function pendingWrap(a: AdoptedConnection = adopted()): { wrap: SouthSideWrap; conn: Connection } {
  const wrap = new SouthSideWrap({ mode: 'record' });
  const conn = wrap.adopt(a);
  if (conn === undefined) throw new Error('not adopted');
  return { wrap, conn };
}

/** The rebuilt socket's window probe on leaving TCP_REPAIR: seq snd_una - 1, acking stable-seq. */
function probe(window = 300): Buffer {
  return buildPacket(fromServer({ seq: (serverSeq(CLIENT_ACKED) - 1) >>> 0, ack: clientSeq(STABLE), window, options: [opt.nop(), opt.nop(), opt.timestamps(6000, 77)] }));
}

/** A client segment at stream offset `offset` acking server offset `ackOffset`. */
function fromClient(offset: number, ackOffset: number, spec: PacketSpec = {}): Buffer {
  return buildPacket({ seq: clientSeq(offset), ack: serverSeq(ackOffset), flags: TcpFlag.ACK, window: 1000, options: [opt.nop(), opt.nop(), opt.timestamps(77, 5000)], ...spec });
}

/** A wrap whose adopted connection went live through the probe. */
function liveWrap(): { wrap: SouthSideWrap; conn: Connection } {
  const w = pendingWrap();
  accepted(w.wrap.outgoing(probe()));
  return w;
}

describe('ConnTable.adopt', () => {
  it("rebuilds the client's view from the record: stable-seq, send edge, shifts, SACK and timestamps", () => {
    const table = new ConnTable();
    const c = table.adopt(adopted())!;
    expect(c.mode).to.equal('pending');
    expect(c.adopted).to.equal(true);
    expect(c.handshakeStable).to.equal(true);
    expect(c.clientIsn).to.equal(CISN);
    expect(c.serverIsn).to.equal(SISN);
    expect(c.stableSeq).to.equal(clientSeq(STABLE));
    expect(c.sndNxt).to.equal(serverSeq(CLIENT_ACKED));
    expect(c.clientAckHigh).to.equal(serverSeq(CLIENT_ACKED));
    expect(c.clientRightEdgeHigh).to.equal(seqAdd(seq(serverSeq(CLIENT_ACKED)), 1000 * 2 ** WSCALE));
    expect(c.clientTsEcrHigh).to.equal(5000);
    expect([incomingWindowShift(c), outgoingWindowShift(c)]).to.deep.equal([WSCALE, WSCALE]);
    expect(sackNegotiated(c)).to.equal(true);
    expect(timestampsNegotiated(c)).to.equal(true);
    expect(table.get({ clientAddr: CLIENT.addr, clientPort: CLIENT.port, serverAddr: SERVER.addr, serverPort: SERVER.port })).to.equal(c);
  });

  it('keeps no TSecr for a connection without timestamps', () => {
    const c = new ConnTable().adopt(adopted({ clientTsEcr: 0 }, { timestamps: false }))!;
    expect(c.clientTsEcrHigh).to.equal(undefined);
    expect(timestampsNegotiated(c)).to.equal(false);
  });

  const bad: Array<[string, AdoptedConnection]> = [
    ['a window scale above 14', adopted({}, { clientWscale: 15 })],
    ['a negative stable offset', adopted({ stableOffset: -1 })],
    ['an ISN of 2^32', adopted({}, { serverIsn: 2 ** 32 })],
    ['a port above 65535', adopted({}, { clientPort: 70000 })],
    ['a fractional TSecr', adopted({ clientTsEcr: 1.5 })],
  ];
  for (const [what, a] of bad) {
    it(`rejects ${what} with FTCP_ERR_BAD_CONFIG`, () => {
      let caught: unknown;
      try {
        checkAdoptedConnection(a);
      } catch (err) {
        caught = err;
      }
      expect(isFtcpError(caught, SswErrorCode.BAD_CONFIG), String(caught)).to.equal(true);
    });
  }
});

describe('SouthSideWrap with a pending connection', () => {
  const segments: Array<[string, Buffer]> = [
    ['data', fromClient(STABLE, CLIENT_ACKED, { flags: TcpFlag.ACK | TcpFlag.PSH, payload: 'lost to the old primary' })],
    ['a FIN', fromClient(STABLE, CLIENT_ACKED, { flags: TcpFlag.ACK | TcpFlag.FIN })],
    ['a RST', fromClient(STABLE, CLIENT_ACKED, { flags: TcpFlag.RST | TcpFlag.ACK })],
    ['a bare ACK', fromClient(STABLE, CLIENT_ACKED)],
  ];
  for (const [what, packet] of segments) {
    it(`drops ${what} unchanged, never to the kernel, and keeps the connection pending`, () => {
      const { wrap, conn } = pendingWrap();
      const bytes = Buffer.from(packet);
      const v = wrap.incoming(bytes);
      expect(v.verdict).to.equal('drop');
      if (v.verdict !== 'drop') return;
      expect(v.reason).to.equal('pending');
      expect(v.conn).to.equal(conn);
      expect(bytes.equals(packet)).to.equal(true);
      expect(conn.mode).to.equal('pending');
      expect(conn.finFromClient).to.equal(false);
      expect(wrap.table.size).to.equal(1);
      expect(wrap.counters.pendingDropped).to.equal(1);
      expect(wrap.status().byMode.pending).to.equal(1);
    });
  }

  it("learns the client's ack, TSval and newest TSecr from the segments it drops", () => {
    const { wrap, conn } = pendingWrap();
    wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 300, { options: [opt.nop(), opt.nop(), opt.timestamps(81, 5600)] }));
    // A reordered older segment moves nothing back.
    wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 200, { options: [opt.nop(), opt.nop(), opt.timestamps(80, 5500)] }));
    expect(conn.clientAckHigh).to.equal(serverSeq(CLIENT_ACKED + 300));
    expect(conn.clientTsEcrHigh).to.equal(5600);
    expect(conn.lastClientTsVal).to.equal(80);
  });

  it('answers with a zero-window ACK at stable-seq, from the client receive edge, with a TSval the client has seen', () => {
    const { wrap, conn } = pendingWrap();
    wrap.incoming(fromClient(STABLE + 40, CLIENT_ACKED + 300, { payload: 'x', options: [opt.nop(), opt.nop(), opt.timestamps(81, 5600)] }));
    const p = parse(craftAck(conn, { zeroWindow: true }));
    expect(p.ip.src).to.equal(SERVER.addr);
    expect(p.dstPort).to.equal(CLIENT.port);
    expect(p.flags).to.equal(TcpFlag.ACK);
    expect(p.window).to.equal(0);
    // Invariant 1: never past what the buffer holds.
    expect(p.ack).to.equal(clientSeq(STABLE));
    // Linux drops a segment whose seq is behind its receive edge, ack and all.
    expect(p.seq).to.equal(serverSeq(CLIENT_ACKED + 300));
    // PAWS: not older than what the client echoed, and nothing it has not seen.
    expect(p.options.tsVal).to.equal(5600);
    expect(p.options.tsEcr).to.equal(81);
  });

  it('sends a keep-alive before any client segment with the logged TSecr and no TSecr of its own', () => {
    const { conn } = pendingWrap();
    const p = parse(craftAck(conn, { zeroWindow: true }));
    expect(p.seq).to.equal(serverSeq(CLIENT_ACKED));
    expect(p.options.tsVal).to.equal(5000);
    // TSecr 0 gives the client no RTT sample, rather than a stale one.
    expect(p.options.tsEcr).to.equal(0);
  });

  it('goes live at the first outgoing segment, once', () => {
    const { wrap, conn } = pendingWrap();
    const first = wrap.outgoing(probe());
    expect(first.verdict).to.equal('accept');
    expect(first.verdict === 'accept' && first.wentLive).to.equal(true);
    expect(conn.mode).to.equal('record');
    const second = wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 300, flags: TcpFlag.ACK | TcpFlag.PSH, payload: 'resent', options: [opt.nop(), opt.nop(), opt.timestamps(6001, 77)] })));
    expect(second.verdict === 'accept' && second.wentLive).to.equal(false);
    expect(wrap.counters.wentLive).to.equal(1);
    expect(wrap.counters.adopted).to.equal(1);
    expect(wrap.status().byMode).to.deep.equal({ record: 1, silent: 0, pending: 0 });
  });

  it('then passes client segments to the rebuilt socket and asks to log them', () => {
    const { wrap } = liveWrap();
    const v = wrap.incoming(fromClient(STABLE, CLIENT_ACKED, { flags: TcpFlag.ACK | TcpFlag.PSH, payload: 'again' }));
    expect(v.verdict).to.equal('accept');
    expect(v.verdict === 'accept' && v.log).to.equal(true);
    expect(v.verdict === 'accept' && v.end).to.equal(clientSeq(STABLE + 5));
  });
});

describe('rewriteIncoming on an adopted connection', () => {
  it('clamps an ack of bytes the rebuilt socket has not sent to its send edge and widens the window by what it took', () => {
    const { wrap, conn } = liveWrap();
    const window = 1000;
    const out = accepted(wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 3000, { window, payload: 'data', flags: TcpFlag.ACK | TcpFlag.PSH })));
    expect(out.ack).to.equal(serverSeq(CLIENT_ACKED));
    const unit = 2 ** WSCALE;
    const clientRight = seqAdd(seq(serverSeq(CLIENT_ACKED + 3000)), window * unit);
    const kernelRight = seqAdd(out.ack, out.window * unit);
    // Within the client's right edge, short of it by less than one unit.
    expect(seqLe(kernelRight, clientRight)).to.equal(true);
    expect(seqForward(clientRight, kernelRight)).to.be.below(unit);
    expect(out.window).to.equal(Math.floor((3000 + window * unit) / unit));
    expect(wrap.counters.acksClamped).to.equal(1);
    // What the client really acknowledged is still what the recorder logs.
    expect(conn.clientAckHigh).to.equal(serverSeq(CLIENT_ACKED + 3000));
  });

  it("clamps client acks to the rebuilt socket's own send edge when the replica sent less than the client acknowledged", () => {
    const { wrap } = pendingWrap();
    const REPLICA_SENT = CLIENT_ACKED - 300; // send calls the old primary made but never logged
    const key = { clientAddr: CLIENT.addr, clientPort: CLIENT.port, serverAddr: SERVER.addr, serverPort: SERVER.port };
    expect(wrap.setRebuiltSendEdge(key, REPLICA_SENT)).to.equal(true);
    // Leaving TCP_REPAIR: the window probe at snd_una - 1 takes the connection live.
    accepted(wrap.outgoing(buildPacket(fromServer({ seq: (serverSeq(REPLICA_SENT) - 1) >>> 0, ack: clientSeq(STABLE), window: 300, options: [opt.nop(), opt.nop(), opt.timestamps(6000, 77)] }))));
    // The client's ack is past anything this kernel sent: Linux would drop it whole.
    const out = accepted(wrap.incoming(fromClient(STABLE, CLIENT_ACKED, { window: 2 })));
    expect(out.ack).to.equal(serverSeq(REPLICA_SENT));
    // The window grows by what the clamp took, so the right edge stays within a unit of the client's.
    expect(out.window).to.equal(Math.floor((300 + 2 * 2 ** WSCALE) / 2 ** WSCALE));
    // The kernel's own bare ACK (a window update) leaves from its edge and reaches the client at the client's receive edge.
    const ackOut = accepted(wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(REPLICA_SENT), ack: clientSeq(STABLE), window: 1000, options: [opt.nop(), opt.nop(), opt.timestamps(6001, 77)] }))));
    expect(ackOut.seq).to.equal(serverSeq(CLIENT_ACKED));
    // As the replica sends the bytes again the edge follows, up to the client's ack and past it.
    wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(REPLICA_SENT), ack: clientSeq(STABLE), window: 300, flags: TcpFlag.ACK | TcpFlag.PSH, payload: Buffer.alloc(400), options: [opt.nop(), opt.nop(), opt.timestamps(6002, 77)] })));
    const caughtUp = wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 100));
    expect(caughtUp.verdict === 'accept' && caughtUp.modified).to.equal(false);
  });

  it('sets no send edge for a connection that is live, unknown or not adopted', () => {
    const { wrap } = liveWrap();
    const key = { clientAddr: CLIENT.addr, clientPort: CLIENT.port, serverAddr: SERVER.addr, serverPort: SERVER.port };
    expect(wrap.setRebuiltSendEdge(key, 0)).to.equal(false);
    expect(wrap.setRebuiltSendEdge({ ...key, clientPort: key.clientPort + 1 }, 0)).to.equal(false);
  });

  it('follows the send edge as the rebuilt socket re-sends', () => {
    const { wrap } = liveWrap();
    wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 300, flags: TcpFlag.ACK | TcpFlag.PSH, payload: Buffer.alloc(2000), options: [opt.nop(), opt.nop(), opt.timestamps(6001, 77)] })));
    expect(accepted(wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 3000))).ack).to.equal(serverSeq(CLIENT_ACKED + 2000));
    const within = wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 1500));
    expect(within.verdict === 'accept' && within.modified).to.equal(false);
    expect(wrap.counters.acksClamped).to.equal(1);
  });

  it('removes SACK blocks that reach past the send edge and keeps the others', () => {
    const { wrap } = liveWrap();
    const blocks: Array<[number, number]> = [
      [serverSeq(CLIENT_ACKED - 200), serverSeq(CLIENT_ACKED - 100)], // a D-SACK below the send edge
      [serverSeq(CLIENT_ACKED + 100), serverSeq(CLIENT_ACKED + 600)],
      [serverSeq(CLIENT_ACKED - 50), serverSeq(CLIENT_ACKED + 10)], // straddles it
    ];
    const out = accepted(wrap.incoming(fromClient(STABLE, CLIENT_ACKED, { options: [opt.nop(), opt.nop(), opt.timestamps(77, 5000), opt.nop(), opt.nop(), opt.sack(blocks)] })));
    expect(out.options.sackBlocks).to.deep.equal([{ left: serverSeq(CLIENT_ACKED - 200), right: serverSeq(CLIENT_ACKED - 100) }]);
    expect(out.options.tsVal).to.equal(77);
    expect(wrap.counters.sackBlocksDropped).to.equal(2);
  });

  it('leaves an ordinary connection whose client acks unsent data alone: that is no takeover', () => {
    const wrap = new SouthSideWrap();
    handshake(wrap, { wscale: 7, sack: true });
    const v = wrap.incoming(buildPacket({ seq: 1001, ack: 9001, window: 100, options: [opt.nop(), opt.nop(), opt.sack([[9001, 9501]])] }));
    expect(v.verdict === 'accept' && v.modified).to.equal(false);
    expect(wrap.counters.acksClamped).to.equal(0);
  });
});

describe('rewriteOutgoing on an adopted connection', () => {
  it("raises a bare ACK the client has passed to the client's receive edge", () => {
    const { wrap, conn } = liveWrap();
    wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 3000));
    const out = accepted(wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 400, options: [opt.nop(), opt.nop(), opt.timestamps(6002, 77)] }))));
    expect(out.seq).to.equal(serverSeq(CLIENT_ACKED + 3000));
    expect(wrap.counters.seqsLifted).to.equal(1);
    // The send edge stays the kernel's: it bounds the acks the kernel accepts.
    expect(conn.sndNxt).to.equal(serverSeq(CLIENT_ACKED));
  });

  const kept: Array<[string, PacketSpec]> = [
    ['a window probe below the send edge', { seq: (serverSeq(CLIENT_ACKED) - 1) >>> 0, ack: clientSeq(STABLE), window: 400 }],
    ['a data segment', { seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 400, flags: TcpFlag.ACK | TcpFlag.PSH, payload: 'resent' }],
    ['a FIN', { seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 400, flags: TcpFlag.ACK | TcpFlag.FIN }],
  ];
  for (const [what, spec] of kept) {
    it(`keeps the seq of ${what}`, () => {
      const { wrap } = liveWrap();
      wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 3000));
      expect(accepted(wrap.outgoing(buildPacket(fromServer(spec)))).seq).to.equal(spec.seq);
      expect(wrap.counters.seqsLifted).to.equal(0);
    });
  }

  it('crafts its own ACKs from the receive edge too, and from the send edge once the socket caught up', () => {
    const { wrap, conn } = liveWrap();
    wrap.incoming(fromClient(STABLE, CLIENT_ACKED + 3000));
    expect(craftedSeqNumber(conn)).to.equal(serverSeq(CLIENT_ACKED + 3000));
    wrap.outgoing(buildPacket(fromServer({ seq: serverSeq(CLIENT_ACKED), ack: clientSeq(STABLE), window: 300, flags: TcpFlag.ACK | TcpFlag.PSH, payload: Buffer.alloc(3500) })));
    expect(craftedSeqNumber(conn)).to.equal(serverSeq(CLIENT_ACKED + 3500));
  });
});

describe('craftedTsVal', () => {
  it('takes the newer of the last TSval sent and the TSecr echoed, across the wrap', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { ts: { client: 100, server: 0xfffffff0 } });
    expect(craftedTsVal(conn)).to.equal(0xfffffff0);
    conn.clientTsEcrHigh = 0x10;
    expect(craftedTsVal(conn)).to.equal(0x10);
  });
});

describe('rewriteIncoming TSecr tracking', () => {
  it('keeps the highest TSecr the client echoed, across the wrap', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { ts: { client: 100, server: 0xfffffff0 } });
    expect(conn.clientTsEcrHigh).to.equal(0xfffffff0); // the handshake's final ACK
    for (const ecr of [0x10, 0xfffffff8, 0x8]) {
      wrap.incoming(buildPacket({ seq: 1001, ack: 5001, options: [opt.nop(), opt.nop(), opt.timestamps(101, ecr)] }));
    }
    expect(conn.clientTsEcrHigh).to.equal(0x10);
  });

  it('ignores the TSecr of a segment without ACK (RFC 7323 3.2)', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { ts: { client: 100, server: 900 } });
    wrap.incoming(buildPacket({ seq: 1001, ack: 0, flags: TcpFlag.RST, options: [opt.nop(), opt.nop(), opt.timestamps(101, 99999)] }));
    expect(conn.clientTsEcrHigh).to.equal(900);
  });
});
