import { expect } from 'chai';
import { ackIsDue, craftAck, craftedAckNumber } from '../src/craft.js';
import { advanceStable } from '../src/conntable.js';
import { verifyIpv4Checksum } from '../src/wire/ipv4.js';
import { seq, seqAdd } from '../src/wire/seq.js';
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
    expect(seqAdd(p.ack, p.window * 128)).to.be.at.least(rightBefore as number);
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
