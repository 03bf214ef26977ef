import { expect } from 'chai';
import { advanceStable, markHandshakeStable, outgoingWindowShift, promote } from '../src/conntable.js';
import { seq, seqAdd, seqDelta, seqForward, seqGe } from '../src/wire/seq.js';
import { parseTcpPacket, verifyTcpChecksum } from '../src/wire/tcp.js';
import type { TcpPacket } from '../src/wire/tcp.js';
import { SouthSideWrap } from '../src/wrap.js';
import type { Verdict } from '../src/wrap.js';
import { buildPacket, fromServer, opt } from './support/builder.js';
import { fixture } from './support/fixture.js';
import { handshake } from './support/handshake.js';

function accepted(v: Verdict): TcpPacket {
  if (v.verdict !== 'accept' || v.packet === undefined) throw new Error(`expected accept, got ${JSON.stringify(v)}`);
  // Re-parse the bytes: what goes on the wire, not the view the rewriter kept.
  const r = parseTcpPacket(v.packet.buf, { checksumPartial: v.packet.checksumPartial });
  if (!r.ok) throw new Error(r.reason);
  expect(verifyTcpChecksum(r.packet), 'checksum after rewrite').to.equal(true);
  return r.packet;
}

describe('rewriteOutgoing ack clamp and window compensation', () => {
  for (const wscale of [0, 7, 14]) {
    describe(`at window scale ${wscale}`, () => {
      it('acks only stable bytes and keeps the kernel right edge, rounded down to one unit', () => {
        const wrap = new SouthSideWrap();
        const conn = handshake(wrap, { wscale });
        expect(outgoingWindowShift(conn)).to.equal(wscale);
        // The client sent 3000 bytes from 1001; the buffer holds only 1001..1401.
        advanceStable(conn, seq(1401));
        const kernelWindow = wscale === 0 ? 60000 : 100;
        const out = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 4001, window: kernelWindow }))));
        expect(out.ack).to.equal(1401);
        const unit = 2 ** wscale;
        const kernelRight = seqAdd(seq(4001), kernelWindow * unit);
        const right = seqAdd(out.ack, out.window * unit);
        expect(seqGe(kernelRight, right), 'right edge within the kernel right edge').to.equal(true);
        expect(seqForward(kernelRight, right)).to.be.below(unit);
        expect(out.window).to.equal(Math.floor((4001 + kernelWindow * unit - 1401) / unit));
      });

      it('never advertises past the kernel right edge while stable-seq creeps up by less than a unit and the server reads nothing', () => {
        // An echo server blocked on its send stops reading: the kernel's
        // right edge stands still while client bytes keep becoming stable.
        // Rounding each clamped edge up once let the edge creep a unit
        // further per ack; the client then sent past the kernel's edge,
        // Linux dropped those segments ack and all (TcpExtBeyondWindow),
        // and both sides waited for each other for good.
        const wrap = new SouthSideWrap();
        const conn = handshake(wrap, { wscale });
        const unit = 2 ** wscale;
        const kernelAck = 1001 + 50_000;
        const w = Math.max(1, Math.floor(8000 / unit));
        const kernelRight = seqAdd(seq(kernelAck), w * unit);
        let stable = 1001;
        for (let i = 0; i < 40; i++) {
          stable += 97; // not a multiple of any unit above 1
          advanceStable(conn, seq(stable));
          const out = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001 + i, ack: kernelAck, window: w, payload: 'x' }))));
          expect(out.ack).to.equal(stable);
          const right = seqAdd(out.ack, out.window * unit);
          expect(seqGe(kernelRight, right), `ack ${i}: right edge ${seqForward(kernelRight, right)} past the kernel's`).to.equal(true);
        }
      });

      it('never moves the advertised right edge left when stable-seq catches up', () => {
        const wrap = new SouthSideWrap();
        const conn = handshake(wrap, { wscale });
        const unit = 2 ** wscale;
        advanceStable(conn, seq(1001 + 7));
        const w = 300;
        const first = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001 + 1000, window: w }))));
        const firstRight = seqAdd(first.ack, first.window * unit);
        // The kernel now acks the same bytes with a smaller window (its buffer filled).
        advanceStable(conn, seq(1001 + 1000));
        const second = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001 + 1000, window: w - 3, payload: 'x' }))));
        const secondRight = seqAdd(second.ack, second.window * unit);
        expect(second.ack).to.equal(1001 + 1000);
        expect(seqGe(secondRight, firstRight)).to.equal(true);
      });

      it('leaves segments unmodified once stable-seq catches up with an unaligned clamp and the kernel edge stands still', () => {
        // A server that only sends (iperf3 -R): the kernel's ack and window
        // stay put after the client's few bytes; only the first segments,
        // sent before those bytes were stable, are clamped. Rounding the
        // clamped edge up once made every later segment need a one-unit
        // larger window: a rewrite (and full checksum) of every packet.
        const wrap = new SouthSideWrap();
        const conn = handshake(wrap, { wscale });
        const unit = 2 ** wscale;
        const kernelAck = 1001 + 37;
        // Wide enough to cover the SYN-ACK's edge at every scale.
        const w = Math.ceil(2000 / unit) + 500;
        advanceStable(conn, seq(1001));
        const clamped = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: kernelAck, window: w, payload: 'a' }))));
        expect(clamped.ack).to.equal(1001);
        const clampedRight = seqAdd(clamped.ack, clamped.window * unit);
        advanceStable(conn, seq(kernelAck));
        for (let i = 0; i < 3; i++) {
          const v = wrap.outgoing(buildPacket(fromServer({ seq: 5002 + i, ack: kernelAck, window: w, payload: 'b' })));
          expect(v.verdict === 'accept' && v.modified, `segment ${i} modified`).to.equal(false);
          const out = accepted(v);
          expect(seqGe(seqAdd(out.ack, out.window * unit), clampedRight), 'right edge never moves left').to.equal(true);
        }
      });
    });
  }

  it('caps the window at 65535 units and counts it', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    advanceStable(conn, seq(1001));
    const out = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001 + 2000, window: 65000 }))));
    expect(out.ack).to.equal(1001);
    expect(out.window).to.equal(65535);
    expect(wrap.counters.windowCapped).to.equal(1);
  });

  it('leaves an ack at or below stable-seq and its window unchanged', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(9000));
    const v = wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 3001, window: 500, payload: 'reply' })));
    expect(v.verdict === 'accept' && v.modified).to.equal(false);
    const out = accepted(v);
    expect(out.ack).to.equal(3001);
    expect(out.window).to.equal(500);
  });

  it('clamps across the wrap when the client ISN is just below 0xffffffff', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { clientIsn: 0xfffffff0, wscale: 7 });
    advanceStable(conn, seq(0xfffffffa));
    const out = accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 0x00000100, window: 10 }))));
    expect(out.ack).to.equal(0xfffffffa);
    // 0x106 bytes taken away, rounded down to 2 units of 128.
    expect(out.window).to.equal(10 + 2);
  });

  it('completes a partial checksum when it rewrites the packet', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(1101));
    const b = buildPacket(fromServer({ seq: 5001, ack: 1501, window: 20, payload: 'data', partial: true }));
    const out = accepted(wrap.outgoing(b, { checksumPartial: true }));
    expect(out.checksumPartial).to.equal(false); // accepted() verified the full checksum
    expect(out.ack).to.equal(1101);
    expect(out.window).to.equal(20 + Math.floor(400 / 128));
  });
});

describe('rewriteOutgoing suppression', () => {
  it('drops a pure ACK that acknowledges nothing new', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(1501));
    accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 2001, window: 100 }))));
    // Kernel acks more, but the buffer has not logged it: nothing new for the client.
    const v = wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 2501, window: 96 })));
    expect(v).to.deep.equal({ verdict: 'drop', reason: 'suppressed' });
    expect(wrap.counters.suppressed).to.equal(1);
  });

  it('sends the next pure ACK once stable-seq has advanced', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(1501));
    accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 2001, window: 100 }))));
    advanceStable(conn, seq(2001));
    expect(accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 2001, window: 100 })))).ack).to.equal(2001);
  });

  const kept: Array<[string, Parameters<typeof fromServer>[0]]> = [
    ['a keep-alive probe below the send edge', { seq: 5000, ack: 2001, window: 100 }],
    ['a duplicate ACK with SACK blocks', { seq: 5001, ack: 2001, window: 100, options: [opt.nop(), opt.nop(), opt.sack([[3001, 4001]])] }],
    ['a data segment', { seq: 5001, ack: 2001, window: 100, flags: 0x18, payload: 'x' }],
    ['a FIN', { seq: 5001, ack: 2001, window: 100, flags: 0x11 }],
    ['a window update that opens the window', { seq: 5001, ack: 2001, window: 200 }],
  ];
  for (const [what, spec] of kept) {
    it(`keeps ${what}`, () => {
      const wrap = new SouthSideWrap();
      const conn = handshake(wrap, { wscale: 7, sack: true });
      advanceStable(conn, seq(2001));
      accepted(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 2001, window: 100 }))));
      expect(wrap.outgoing(buildPacket(fromServer(spec))).verdict).to.equal('accept');
    });
  }
});

describe('rewriteOutgoing handshake', () => {
  it('holds the SYN-ACK until the connection record is stable, then sends it', () => {
    const wrap = new SouthSideWrap();
    const syn = wrap.incoming(buildPacket({ seq: 1000, flags: 0x02, options: [opt.mss(1460)] }));
    if (syn.verdict !== 'accept' || syn.conn === undefined) throw new Error('no connection');
    const synack = (): Buffer => buildPacket(fromServer({ seq: 5000, ack: 1001, flags: 0x12, options: [opt.mss(1460)] }));
    const held = wrap.outgoing(synack());
    expect(held.verdict).to.equal('hold');
    markHandshakeStable(syn.conn);
    const out = accepted(wrap.outgoing(synack()));
    expect(out.ack).to.equal(1001);
    expect(syn.conn.serverIsn).to.equal(5000);
  });
});

describe('rewriteOutgoing in silent mode', () => {
  it('drops every outgoing segment, then sends with deltas once promoted', () => {
    const wrap = new SouthSideWrap({ mode: 'silent' });
    const conn = handshake(wrap, { wscale: 7 });
    expect(wrap.counters.silentDropped).to.equal(1); // the SYN-ACK
    for (const flags of [0x10, 0x18, 0x11, 0x14]) {
      expect(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001, flags, payload: flags & 8 ? 'x' : '' }))).verdict).to.equal('drop');
    }
    promote(conn, { seqDelta: seqDelta(100), ackDelta: seqDelta(0), tsOffset: 0 });
    advanceStable(conn, seq(1001));
    expect(accepted(wrap.outgoing(buildPacket(fromServer({ seq: 4901, ack: 1001, payload: 'hi', flags: 0x18 })))).seq).to.equal(5001);
  });
});

describe('sequence and SACK mapping by deltas', () => {
  it('maps outgoing seq across the wrap and outgoing SACK edges by ackDelta', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7, sack: true, serverIsn: 0xfffffff0 });
    promote(conn, { seqDelta: seqDelta(0x20), ackDelta: seqDelta(-10), tsOffset: 0 });
    advanceStable(conn, seq(0x7fffffff));
    const out = accepted(
      wrap.outgoing(buildPacket(fromServer({ seq: 0xfffffff1, ack: 2011, window: 50, options: [opt.nop(), opt.nop(), opt.sack([[3011, 4011], [0xfffffff8, 0x8]])] }))),
    );
    expect(out.seq).to.equal(0x11);
    expect(out.ack).to.equal(2001);
    expect(out.options.sackBlocks).to.deep.equal([
      { left: 3001, right: 4001 },
      { left: 0xffffffee, right: 0xfffffffe },
    ]);
  });

  it('maps the four SACK blocks of an incoming fixture by the inverse seqDelta', () => {
    const wrap = new SouthSideWrap();
    // The fixture acks 0xfffffff1: the server ISN the client saw was 0xfffffff0.
    const conn = handshake(wrap, { clientIsn: 1000, serverIsn: 0xfffffff0, sack: true });
    promote(conn, { seqDelta: seqDelta(0x100), ackDelta: seqDelta(0), tsOffset: 0 });
    const out = accepted(wrap.incoming(fixture('ack-sack4.hex')));
    expect(out.ack).to.equal(0xfffffef1);
    expect(out.options.sackBlocks).to.deep.equal([
      { left: 0x0, right: 0x100 },
      { left: 0x200, right: 0x300 },
      { left: 0xfffffef8, right: 0xffffff08 },
      { left: 0x400, right: 0x500 },
    ]);
  });

  it('maps incoming seq by the inverse ackDelta', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    promote(conn, { seqDelta: seqDelta(0), ackDelta: seqDelta(5), tsOffset: 0 });
    expect(accepted(wrap.incoming(buildPacket({ seq: 3, ack: 5001, payload: 'a', flags: 0x18 }))).seq).to.equal(0xfffffffe);
  });
});

describe('timestamp mapping', () => {
  it('adds tsOffset to outgoing TSval across the wrap and leaves TSecr', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { ts: { client: 100, server: 0xfffffff0 }, wscale: 7 });
    promote(conn, { seqDelta: seqDelta(0), ackDelta: seqDelta(0), tsOffset: 0x20 });
    advanceStable(conn, seq(1001));
    const out = accepted(
      wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001, flags: 0x18, payload: 'z', options: [opt.nop(), opt.nop(), opt.timestamps(0xfffffff5, 101)] }))),
    );
    expect(out.options.tsVal).to.equal(0x15);
    expect(out.options.tsEcr).to.equal(101);
    expect(conn.lastTsValSent).to.equal(0x15);
  });

  it('subtracts tsOffset from incoming TSecr and leaves TSval', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { ts: { client: 100, server: 7 } });
    promote(conn, { seqDelta: seqDelta(0), ackDelta: seqDelta(0), tsOffset: 0x20 });
    const out = accepted(wrap.incoming(buildPacket({ seq: 1001, ack: 5001, options: [opt.nop(), opt.nop(), opt.timestamps(300, 0x10)] })));
    expect(out.options.tsEcr).to.equal(0xfffffff0);
    expect(out.options.tsVal).to.equal(300);
  });

  it('rewrites the TSval of a captured data segment at its real offset', () => {
    const wrap = new SouthSideWrap();
    const b = fixture('lo-data-partial.hex');
    const p = parseTcpPacket(b, { checksumPartial: true });
    if (!p.ok) throw new Error(p.reason);
    // Build the server side of the captured connection: outgoing is server to client.
    const server = { src: p.packet.ip.dst, dst: p.packet.ip.src, srcPort: p.packet.dstPort, dstPort: p.packet.srcPort };
    const syn = wrap.incoming(fixture('lo-syn-partial.hex'), { checksumPartial: true });
    if (syn.verdict !== 'accept' || syn.conn === undefined) throw new Error('no connection');
    markHandshakeStable(syn.conn);
    accepted(wrap.outgoing(fixture('lo-synack-partial.hex'), { checksumPartial: true }));
    promote(syn.conn, { seqDelta: seqDelta(0), ackDelta: seqDelta(0), tsOffset: 1 });
    advanceStable(syn.conn, seq(0x0a0bba4f));
    const out = accepted(
      wrap.outgoing(buildPacket({ ...server, seq: 0x5a9a7741, ack: 0x0a0bba4f, flags: 0x10, window: 64, options: [opt.nop(), opt.nop(), opt.timestamps(0xd4b49943, 0xe5f21afb)], partial: true }), {
        checksumPartial: true,
      }),
    );
    expect(out.options.tsVal).to.equal(0xd4b49944);
    expect(out.window).to.equal(64);
  });
});

describe('SouthSideWrap.incoming', () => {
  it('asks to log data, FIN and RST but not a bare ACK', () => {
    const wrap = new SouthSideWrap();
    handshake(wrap, {});
    const log = (spec: Parameters<typeof buildPacket>[0]): boolean => {
      const v = wrap.incoming(buildPacket(spec));
      return v.verdict === 'accept' && v.log;
    };
    expect(log({ seq: 1001, ack: 5001 })).to.equal(false);
    expect(log({ seq: 1001, ack: 5001, flags: 0x18, payload: 'abc' })).to.equal(true);
    expect(log({ seq: 1004, ack: 5001, flags: 0x11 })).to.equal(true);
  });

  it('reports the client-view end of a segment for stable-seq', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    promote(conn, { seqDelta: seqDelta(0), ackDelta: seqDelta(50), tsOffset: 0 });
    const v = wrap.incoming(buildPacket({ seq: 1001, ack: 5001, flags: 0x18, payload: 'abcd' }));
    expect(v.verdict === 'accept' && v.end).to.equal(1005);
  });

  it('passes a segment of an unknown connection unchanged', () => {
    const wrap = new SouthSideWrap();
    const b = buildPacket({ seq: 1, ack: 2, payload: 'x', flags: 0x18 });
    const copy = Buffer.from(b);
    const v = wrap.incoming(b);
    expect(v.verdict).to.equal('accept');
    expect(b.equals(copy)).to.equal(true);
    expect(wrap.counters.unknownConnection).to.equal(1);
  });
});

describe('SouthSideWrap with malformed packets', () => {
  for (const name of ['truncated-ip.hex', 'data-offset-past-end.hex', 'bad-option-length.hex']) {
    for (const dir of ['incoming', 'outgoing'] as const) {
      it(`drops and counts ${name} ${dir}`, () => {
        const wrap = new SouthSideWrap();
        const v = wrap[dir](fixture(name));
        expect(v.verdict).to.equal('drop');
        expect(v.verdict === 'drop' && v.reason).to.equal('malformed');
        expect(wrap.counters.malformedTotal).to.equal(1);
      });
    }
  }

  it('counts malformed packets by reason', () => {
    const wrap = new SouthSideWrap();
    wrap.incoming(fixture('truncated-ip.hex'));
    wrap.incoming(fixture('truncated-ip.hex'));
    wrap.outgoing(fixture('bad-option-length.hex'));
    expect(wrap.counters.malformed).to.deep.equal({ 'truncated-ip-header': 2, 'bad-option-length': 1 });
  });

  it('drops an outgoing segment of an unknown connection but lets a RST out', () => {
    const wrap = new SouthSideWrap();
    expect(wrap.outgoing(buildPacket(fromServer({ payload: 'x', flags: 0x18 }))).verdict).to.equal('drop');
    expect(wrap.outgoing(buildPacket(fromServer({ flags: 0x14 }))).verdict).to.equal('accept');
  });
});

describe('SouthSideWrap with truncated captures', () => {
  it('accepts a truncated segment that needs no rewrite', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(1001));
    const b = buildPacket(fromServer({ seq: 5001, ack: 1001, window: 100, flags: 0x18, payload: Buffer.alloc(2000, 1) })).subarray(0, 100);
    const v = wrap.outgoing(b, { truncatedOk: true });
    expect(v.verdict === 'accept' && v.modified).to.equal(false);
  });

  it('drops a truncated segment that needs a rewrite and counts it', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(1001));
    const b = buildPacket(fromServer({ seq: 5001, ack: 3001, window: 100, flags: 0x18, payload: Buffer.alloc(2000, 1) })).subarray(0, 100);
    expect(wrap.outgoing(b, { truncatedOk: true })).to.deep.equal({ verdict: 'drop', reason: 'truncated' });
    expect(wrap.counters.truncatedDropped).to.equal(1);
  });

  it('counts a truncated capture as malformed when truncation is not allowed', () => {
    const wrap = new SouthSideWrap();
    handshake(wrap, {});
    const b = buildPacket({ seq: 1001, ack: 5001, payload: Buffer.alloc(2000) }).subarray(0, 100);
    expect(wrap.incoming(b)).to.deep.equal({ verdict: 'drop', reason: 'malformed', malformed: 'bad-ip-total-length' });
  });
});

describe('SouthSideWrap with partial checksums', () => {
  it('leaves a partial checksum alone when nothing is rewritten', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7 });
    advanceStable(conn, seq(5000));
    const b = buildPacket(fromServer({ seq: 5001, ack: 1501, window: 20, payload: 'data', partial: true }));
    const before = b.readUInt16BE(36);
    const v = wrap.outgoing(b, { checksumPartial: true });
    expect(v.verdict === 'accept' && v.modified).to.equal(false);
    expect(b.readUInt16BE(36)).to.equal(before);
  });
});

describe('SouthSideWrap onOpen', () => {
  it('lets deltas set at open apply to the SYN itself', () => {
    const wrap = new SouthSideWrap({
      onOpen: (c) => promote(c, { seqDelta: seqDelta(0), ackDelta: seqDelta(100), tsOffset: 0 }),
    });
    expect(accepted(wrap.incoming(buildPacket({ seq: 1000, flags: 0x02 }))).seq).to.equal(900);
  });
});

describe('rewriteOutgoing against byte fixtures at window scale 14', () => {
  it('turns ack-wscale14-unclamped into exactly ack-wscale14-clamped', () => {
    const wrap = new SouthSideWrap();
    const syn = wrap.incoming(fixture('syn-wscale14.hex'));
    if (syn.verdict !== 'accept' || syn.conn === undefined) throw new Error('no connection');
    markHandshakeStable(syn.conn);
    accepted(wrap.outgoing(fixture('synack-wscale14.hex')));
    expect(outgoingWindowShift(syn.conn)).to.equal(14);
    advanceStable(syn.conn, seq(1001 + 4096));
    const b = fixture('ack-wscale14-unclamped.hex');
    expect(wrap.outgoing(b).verdict).to.equal('accept');
    expect(b.toString('hex')).to.equal(fixture('ack-wscale14-clamped.hex').toString('hex'));
  });
});
