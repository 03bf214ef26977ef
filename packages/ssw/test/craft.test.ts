import { expect } from 'chai';
import { ackIsDue, craftAck, craftedAckNumber } from '../src/craft.js';
import { advanceStable } from '../src/conntable.js';
import { verifyIpv4Checksum } from '../src/wire/ipv4.js';
import { seq, seqAdd, seqForward, seqGe } from '../src/wire/seq.js';
import { parseTcpPacket, TcpFlag, verifyTcpChecksum } from '../src/wire/tcp.js';
import type { TcpPacket } from '../src/wire/tcp.js';
import { SouthSideWrap } from '../src/wrap.js';
import { buildPacket, CLIENT, fromServer, opt, SERVER } from './support/builder.js';
import { handshake } from './support/handshake.js';

function parse(b: Buffer): TcpPacket {
  const r = parseTcpPacket(b);
  if (!r.ok) throw new Error(r.reason);
  expect(verifyTcpChecksum(r.packet)).to.equal(true);
  expect(verifyIpv4Checksum(b, 20)).to.equal(true);
  return r.packet;
}

describe('craftAck', () => {
  it('never advertises past the kernel right edge when stable-seq is not a whole number of units from it', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 10 });
    advanceStable(conn, seq(1001 + 100));
    // The kernel holds 3000 bytes and offers 4 units (4096 bytes) beyond them.
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 4001, window: 4, flags: 0x18, payload: 'abc' })));
    const kernelRight = seqAdd(seq(4001), 4 * 1024);
    for (const stable of [1001 + 777, 1001 + 1500, 1001 + 2999]) {
      advanceStable(conn, seq(stable));
      const p = parse(craftAck(conn));
      expect(p.ack).to.equal(stable);
      const right = seqAdd(p.ack, p.window * 1024);
      expect(seqGe(kernelRight, right), `stable ${stable}: right edge past the kernel's by ${seqForward(right, kernelRight)}`).to.equal(true);
      expect(seqForward(kernelRight, right), 'within one unit of it').to.be.below(1024);
    }
  });

  it('acks stable-seq from the send edge with the advertised right edge and timestamps', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { wscale: 7, sack: true, ts: { client: 100, server: 900 } });
    advanceStable(conn, seq(1501));
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 3001, window: 40, flags: 0x18, payload: 'abc', options: [opt.nop(), opt.nop(), opt.timestamps(905, 102)] })));
    const rightBefore = conn.lastRightEdge;
    advanceStable(conn, seq(2501));
    expect(ackIsDue(conn)).to.equal(true);
    const p = parse(craftAck(conn));
    expect(p.ip.src).to.equal(SERVER.addr);
    expect(p.ip.dst).to.equal(CLIENT.addr);
    expect(p.srcPort).to.equal(SERVER.port);
    expect(p.dstPort).to.equal(CLIENT.port);
    expect(p.flags).to.equal(TcpFlag.ACK);
    expect(p.seq).to.equal(5004);
    expect(p.ack).to.equal(2501);
    // The kernel's right edge (3001 + 40 units of 128), rounded down to a unit from the new ack: it may step
    // back by less than a unit from the edge advertised before (rightBefore), never past the kernel's.
    const kernelRight = seqAdd(seq(3001), 40 * 128);
    const right = seqAdd(p.ack, p.window * 128);
    expect(seqGe(kernelRight, right)).to.equal(true);
    expect(seqForward(kernelRight, right)).to.be.below(128);
    const steppedBack = seqGe(right, rightBefore!) ? 0 : seqForward(rightBefore!, right);
    expect(steppedBack).to.be.below(128);
    expect(p.options.tsVal).to.equal(905);
    expect(p.options.tsEcr).to.equal(100 + 1);
    expect(ackIsDue(conn)).to.equal(false);
  });

  it('never acks past what the local kernel acknowledged', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1201, window: 1000 })));
    advanceStable(conn, seq(5000));
    expect(craftedAckNumber(conn)).to.equal(1201);
    expect(parse(craftAck(conn)).ack).to.equal(1201);
  });

  it('advertises a zero window for a keep-alive and carries SACK blocks when negotiated', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, { sack: true, wscale: 14 });
    advanceStable(conn, seq(1001));
    const p = parse(craftAck(conn, { zeroWindow: true, sackBlocks: [{ left: seq(2001), right: seq(3001) }] }));
    expect(p.window).to.equal(0);
    expect(p.options.sackBlocks).to.deep.equal([{ left: 2001, right: 3001 }]);
  });

  it('leaves SACK blocks out when the connection did not negotiate SACK', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    const p = parse(craftAck(conn, { sackBlocks: [{ left: seq(2001), right: seq(3001) }] }));
    expect(p.options.sackBlocks).to.deep.equal([]);
  });
});
