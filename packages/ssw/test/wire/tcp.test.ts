import { expect } from 'chai';
import { isFtcpError } from '@ftcp/stable-buffer';
import { MalformedPacketError, SswErrorCode } from '../../src/errors.js';
import {
  hasFlag,
  parseTcpOptions,
  parseTcpPacket,
  parseTcpPacketOrThrow,
  retainSackBlocks,
  segmentLength,
  setAck,
  setSackBlock,
  setSeq,
  setTsVal,
  setWindow,
  TcpFlag,
  verifyTcpChecksum,
} from '../../src/wire/tcp.js';
import type { TcpPacket } from '../../src/wire/tcp.js';
import { seq } from '../../src/wire/seq.js';
import { buildPacket, opt } from '../support/builder.js';
import { fixture } from '../support/fixture.js';
import { Prng } from '../support/prng.js';

function parsed(buf: Buffer, checksumPartial = false, allowTruncated = false): TcpPacket {
  const r = parseTcpPacket(buf, { checksumPartial, allowTruncated });
  if (!r.ok) throw new Error(`unexpected ${r.reason}`);
  return r.packet;
}

describe('parseTcpPacket', () => {
  it('reads every option of a captured Linux SYN', () => {
    const p = parsed(fixture('lo-syn-partial.hex'), true);
    expect(p.srcPort).to.equal(0x84ac);
    expect(p.dstPort).to.equal(47123);
    expect(p.seq).to.equal(0x0a0bba44);
    expect(hasFlag(p, TcpFlag.SYN)).to.equal(true);
    expect(p.options.mss).to.equal(65495);
    expect(p.options.sackPermitted).to.equal(true);
    expect(p.options.tsVal).to.equal(0xe5f21afa);
    expect(p.options.tsEcr).to.equal(0);
    expect(p.options.windowScale).to.equal(10);
    expect(p.payloadLength).to.equal(0);
    expect(segmentLength(p)).to.equal(1);
    expect(verifyTcpChecksum(p)).to.equal(true);
  });

  it('finds the payload of a captured data segment', () => {
    const b = fixture('lo-data-partial.hex');
    const p = parsed(b, true);
    expect(Buffer.from(b.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength)).toString()).to.equal('hello ftcp');
    expect(segmentLength(p)).to.equal(10);
  });

  it('reads window scale 14 and an ISN below the wrap from a SYN-ACK', () => {
    const p = parsed(fixture('synack-wscale14.hex'));
    expect(p.options.windowScale).to.equal(14);
    expect(p.seq).to.equal(0xfffffff0);
    expect(p.options.mss).to.equal(1460);
    expect(verifyTcpChecksum(p)).to.equal(true);
  });

  it('reads four SACK blocks including one that crosses the wrap', () => {
    const p = parsed(fixture('ack-sack4.hex'));
    expect(p.options.sackBlocks).to.deep.equal([
      { left: 0x100, right: 0x200 },
      { left: 0x300, right: 0x400 },
      { left: 0xfffffff8, right: 0x8 },
      { left: 0x500, right: 0x600 },
    ]);
  });

  it('parses options that fill the 40-byte limit', () => {
    const p = parsed(fixture('ack-options40.hex'));
    expect(p.tcpHeaderLength).to.equal(60);
    expect(p.options.tsVal).to.equal(1000);
    expect(p.options.sackBlocks).to.have.length(3);
    expect(p.payloadLength).to.equal(4);
  });

  it('rejects a data offset past the end as bad-data-offset', () => {
    expect(parseTcpPacket(fixture('data-offset-past-end.hex'))).to.deep.equal({ ok: false, reason: 'bad-data-offset' });
  });

  it('rejects a data offset below 5 as bad-data-offset', () => {
    const b = buildPacket();
    b[32] = 0x40;
    expect(parseTcpPacket(b)).to.deep.equal({ ok: false, reason: 'bad-data-offset' });
  });

  it('rejects an option running past the header as bad-option-length', () => {
    expect(parseTcpPacket(fixture('bad-option-length.hex'))).to.deep.equal({ ok: false, reason: 'bad-option-length' });
  });

  it('rejects a datagram too short for a TCP header as truncated-tcp-header', () => {
    const b = buildPacket().subarray(0, 30);
    b.writeUInt16BE(30, 2);
    expect(parseTcpPacket(b)).to.deep.equal({ ok: false, reason: 'truncated-tcp-header' });
  });

  it('rejects UDP as not-tcp', () => {
    const b = buildPacket();
    b[9] = 17;
    expect(parseTcpPacket(b)).to.deep.equal({ ok: false, reason: 'not-tcp' });
  });

  it('passes IPv4 reasons through', () => {
    expect(parseTcpPacket(fixture('truncated-ip.hex'))).to.deep.equal({ ok: false, reason: 'truncated-ip-header' });
  });
});

describe('parseTcpOptions', () => {
  const cases: Array<[string, number[], string]> = [
    ['a length byte of 1', [8, 1, 0, 0], 'bad-option-length'],
    ['a length byte of 0', [0x1e, 0, 0, 0], 'bad-option-length'],
    ['a kind with no room for its length byte', [1, 1, 1, 8], 'bad-option-length'],
    ['an MSS of length 3', [2, 3, 5, 1], 'bad-option-size'],
    ['a window scale of length 4', [3, 4, 7, 1], 'bad-option-size'],
    ['a SACK-permitted of length 3', [4, 3, 0, 1], 'bad-option-size'],
    ['a SACK of length 9', [5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0], 'bad-option-size'],
    ['a SACK with no block', [5, 2, 1, 1], 'bad-option-size'],
    ['timestamps of length 8', [8, 8, 0, 0, 0, 1, 0, 0], 'bad-option-size'],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`rejects ${what} as ${reason}`, () => {
      expect(parseTcpOptions(Uint8Array.from(bytes), 0, bytes.length)).to.deep.equal({ ok: false, reason });
    });
  }

  it('keeps unknown options with their offsets and stops at EOL', () => {
    const bytes = [1, 30, 4, 0xaa, 0xbb, 0, 99, 99];
    const r = parseTcpOptions(Uint8Array.from(bytes), 0, bytes.length);
    if (!r.ok) throw new Error(r.reason);
    expect(r.options.unknown).to.deep.equal([{ kind: 30, offset: 1, length: 4 }]);
  });

  it('lets the last of two timestamps options win', () => {
    const bytes = [...opt.timestamps(1, 2), ...opt.timestamps(3, 4)];
    const r = parseTcpOptions(Uint8Array.from(bytes), 0, bytes.length);
    expect(r.ok && r.options.tsVal).to.equal(3);
  });
});

describe('TCP setters', () => {
  it('rewrite seq, ack and window and leave a valid full checksum', () => {
    const b = fixture('synack-wscale14.hex');
    const p = parsed(b);
    setSeq(p, seq(0x10));
    setAck(p, seq(0xffffffff));
    setWindow(p, 0x1234);
    expect(b.readUInt32BE(24)).to.equal(0x10);
    expect(b.readUInt32BE(28)).to.equal(0xffffffff);
    expect(b.readUInt16BE(34)).to.equal(0x1234);
    expect(p.seq).to.equal(0x10);
    expect(verifyTcpChecksum(p)).to.equal(true);
    expect(verifyTcpChecksum(parsed(b))).to.equal(true);
  });

  it('rewrite a SACK edge at the 40-byte limit and the timestamp before it', () => {
    const b = fixture('ack-options40.hex');
    const p = parsed(b);
    setSackBlock(p, 2, { left: seq(1), right: seq(2) });
    setTsVal(p, 0xdeadbeef);
    const again = parsed(b);
    expect(again.options.sackBlocks[2]).to.deep.equal({ left: 1, right: 2 });
    expect(again.options.tsVal).to.equal(0xdeadbeef);
    expect(verifyTcpChecksum(again)).to.equal(true);
  });

  it('leave a captured partial checksum untouched', () => {
    const b = fixture('lo-data-partial.hex');
    const before = b.readUInt16BE(36);
    const p = parsed(b, true);
    setSeq(p, seq(p.seq + 5));
    setTsVal(p, 1);
    expect(b.readUInt16BE(36)).to.equal(before);
    expect(verifyTcpChecksum(p)).to.equal(true);
  });

  it('refuse a SACK block index the packet does not have', () => {
    const p = parsed(fixture('ack-sack4.hex'));
    expect(() => setSackBlock(p, 4, { left: seq(0), right: seq(0) })).to.throw(RangeError);
  });
});

describe('parseTcpPacketOrThrow', () => {
  it('throws FTCP_ERR_MALFORMED_PACKET with the reason for a truncated packet', () => {
    let caught: unknown;
    try {
      parseTcpPacketOrThrow(fixture('truncated-ip.hex'));
    } catch (err) {
      caught = err;
    }
    expect(isFtcpError(caught, SswErrorCode.MALFORMED_PACKET)).to.equal(true);
    expect((caught as MalformedPacketError).reason).to.equal('truncated-ip-header');
  });

  it('returns the packet when it parses', () => {
    expect(parseTcpPacketOrThrow(fixture('ack-sack4.hex')).ack).to.equal(0xfffffff1);
  });
});

describe('parseTcpPacket with allowTruncated', () => {
  it('rejects a capture shorter than its datagram unless truncation is allowed', () => {
    const b = buildPacket({ payload: Buffer.alloc(500, 7), options: [opt.nop(), opt.nop(), opt.timestamps(1, 2)] }).subarray(0, 100);
    expect(parseTcpPacket(b)).to.deep.equal({ ok: false, reason: 'bad-ip-total-length' });
    const p = parsed(b, false, true);
    expect(p.truncated).to.equal(true);
    expect(p.payloadLength).to.equal(500);
  });

  it('still requires complete headers', () => {
    const b = buildPacket({ payload: Buffer.alloc(500), options: [opt.timestamps(1, 2)] }).subarray(0, 50);
    expect(parseTcpPacket(b, { allowTruncated: true })).to.deep.equal({ ok: false, reason: 'bad-data-offset' });
  });

  it('updates a full checksum correctly from the captured headers alone', () => {
    const full = buildPacket({ seq: 77, ack: 88, payload: Buffer.alloc(3000, 0x5a), options: [opt.nop(), opt.nop(), opt.timestamps(1, 2)] });
    const cut = Buffer.from(full.subarray(0, 200));
    const p = parsed(cut, false, true);
    setSeq(p, seq(0xfffffff0));
    setAck(p, seq(12345));
    setTsVal(p, 99);
    setWindow(p, 3);
    expect(verifyTcpChecksum(p)).to.equal(false); // cannot be summed from a capture
    cut.copy(full, 0, 0, p.payloadOffset);
    expect(verifyTcpChecksum(parsed(full))).to.equal(true);
  });
});

describe('retainSackBlocks', () => {
  const four: Array<[number, number]> = [
    [1000, 2000],
    [3000, 4000],
    [5000, 6000],
    [0xfffffff0, 0x10],
  ];

  it('moves the kept blocks to the front, shortens the option and pads it with NOPs', () => {
    const p = parsed(buildPacket({ options: [opt.nop(), opt.nop(), opt.sack(four)] }));
    const removed = retainSackBlocks(p, (b) => b.left !== 3000 && b.left !== 0xfffffff0);
    expect(removed).to.equal(2);
    expect(verifyTcpChecksum(p)).to.equal(true);
    const again = parsed(Buffer.from(p.buf));
    expect(again.options.sackBlocks).to.deep.equal([
      { left: 1000, right: 2000 },
      { left: 5000, right: 6000 },
    ]);
    expect(p.options.sackBlocks).to.deep.equal(again.options.sackBlocks);
    expect(again.tcpHeaderLength).to.equal(p.tcpHeaderLength);
    // Option length 2 + 8 * 2, then 16 NOPs where the two removed blocks were.
    const kind = p.options.sackOffset - 2;
    expect(p.buf[kind + 1]).to.equal(18);
    expect([...p.buf.subarray(kind + 18, kind + 34)]).to.deep.equal(Array(16).fill(1));
  });

  it('turns the whole option into NOPs when no block is kept, leaving the timestamps option intact', () => {
    const p = parsed(buildPacket({ options: [opt.nop(), opt.nop(), opt.timestamps(7, 9), opt.nop(), opt.nop(), opt.sack([[1, 2]])] }));
    expect(retainSackBlocks(p, () => false)).to.equal(1);
    expect(verifyTcpChecksum(p)).to.equal(true);
    const again = parsed(Buffer.from(p.buf));
    expect(again.options.sackBlocks).to.deep.equal([]);
    expect(again.options.tsVal).to.equal(7);
    expect(again.options.tsEcr).to.equal(9);
    expect(p.options.sackOffset).to.equal(-1);
  });

  it('changes nothing when every block is kept', () => {
    const b = buildPacket({ options: [opt.nop(), opt.nop(), opt.sack(four)] });
    const before = Buffer.from(b);
    expect(retainSackBlocks(parsed(b), () => true)).to.equal(0);
    expect(b.equals(before)).to.equal(true);
  });

  it('leaves a partial checksum untouched', () => {
    const p = parsed(buildPacket({ partial: true, options: [opt.nop(), opt.sack(four.slice(0, 3))] }), true);
    const before = p.buf[p.tcpOffset + 16]! * 256 + p.buf[p.tcpOffset + 17]!;
    retainSackBlocks(p, (b) => b.left === 5000);
    expect(p.buf[p.tcpOffset + 16]! * 256 + p.buf[p.tcpOffset + 17]!).to.equal(before);
    expect(verifyTcpChecksum(p)).to.equal(true);
  });

  it('keeps the incremental checksum equal to a full recompute at every option alignment', () => {
    const rng = new Prng(0x5ac4);
    for (let i = 0; i < 300; i++) {
      const n = rng.between(1, 3);
      const blocks = Array.from({ length: n }, (): [number, number] => [rng.u32(), rng.u32()]);
      // 0 to 3 NOPs before the option put it at every alignment.
      const lead = Array.from({ length: rng.between(0, 3) }, () => opt.nop());
      const p = parsed(buildPacket({ options: [...lead, opt.sack(blocks)], payload: rng.bytes(rng.between(0, 9)) }));
      const keep = blocks.map(() => rng.chance(0.5));
      let k = 0;
      retainSackBlocks(p, () => keep[k++] ?? false);
      expect(verifyTcpChecksum(p), `seed ${rng.seed} case ${i}`).to.equal(true);
      expect(parsed(Buffer.from(p.buf)).options.sackBlocks.length).to.equal(keep.filter(Boolean).length);
    }
  });
});
