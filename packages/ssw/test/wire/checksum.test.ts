import { expect } from 'chai';
import {
  combine,
  csumReplace,
  csumUpdate16,
  csumUpdate32,
  finish,
  fold,
  ipv4HeaderChecksum,
  onesSum,
  partialUpdate16,
  pseudoHeaderSum,
  tcpChecksum,
} from '../../src/wire/checksum.js';
import { parseTcpPacket, setAck, setSackBlock, setSeq, setTsEcr, setTsVal, setWindow, verifyTcpChecksum } from '../../src/wire/tcp.js';
import type { TcpPacket } from '../../src/wire/tcp.js';
import { seq } from '../../src/wire/seq.js';
import { buildPacket, opt } from '../support/builder.js';
import { Prng } from '../support/prng.js';

describe('onesSum and fold', () => {
  it('sum the RFC 1071 example words to 0xddf2', () => {
    // RFC 1071 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 after the fold.
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(fold(onesSum(b, 0, b.length))).to.equal(0xddf2);
  });

  it('pads an odd trailing byte as the high byte of a word', () => {
    expect(onesSum(Uint8Array.from([0x12, 0x34, 0x56]), 0, 3)).to.equal(0x1234 + 0x5600);
  });

  it('folds carries larger than 2^32 with end-around carry', () => {
    expect(fold(0x1_0000_0000)).to.equal(1);
    expect(fold(0x1ffff)).to.equal(1);
    expect(fold(0xffff)).to.equal(0xffff);
  });
});

describe('combine', () => {
  it('gives the sum of a buffer from the sums of its even-aligned halves', () => {
    const rng = new Prng(11);
    for (let i = 0; i < 500; i++) {
      const b = rng.bytes(rng.between(2, 200));
      const cut = rng.below(b.length >> 1) * 2;
      expect(combine(onesSum(b, 0, cut), onesSum(b, cut, b.length))).to.equal(fold(onesSum(b, 0, b.length)));
    }
  });
});

describe('ipv4HeaderChecksum', () => {
  it('computes 0xb861 for the classic example header', () => {
    const h = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    expect(ipv4HeaderChecksum(h, 0, 20)).to.equal(0xb861);
  });
});

describe('tcpChecksum', () => {
  it('makes a segment that sums, with its pseudo-header, to 0xffff', () => {
    const p = buildPacket({ payload: 'abc', options: [opt.timestamps(1, 2)] });
    const len = p.length - 20;
    expect(fold(pseudoHeaderSum(0x0a000001, 0x0a000002, 6, len) + onesSum(p, 20, p.length))).to.equal(0xffff);
    expect(tcpChecksum(p, 20, len, 0x0a000001, 0x0a000002)).to.equal(p.readUInt16BE(36));
  });
});

describe('csumUpdate16 and csumUpdate32', () => {
  it('match a full recompute for thousands of random buffers and word changes', () => {
    const rng = new Prng(0xc0ffee);
    for (let i = 0; i < 5000; i++) {
      const b = rng.bytes(rng.between(2, 64) * 2);
      let hc = finish(onesSum(b, 0, b.length));
      const wide = rng.chance(0.5) && b.length >= 4;
      const off = rng.below((b.length - (wide ? 4 : 2)) / 2 + 1) * 2;
      if (wide) {
        const old = b.readUInt32BE(off);
        const now = rng.chance(0.1) ? old : rng.u32();
        b.writeUInt32BE(now, off);
        hc = csumUpdate32(hc, old, now);
      } else {
        const old = b.readUInt16BE(off);
        const now = rng.chance(0.1) ? (~old & 0xffff) : rng.below(0x10000);
        b.writeUInt16BE(now, off);
        hc = csumUpdate16(hc, old, now);
      }
      expect(hc, `seed 0xc0ffee case ${i}`).to.equal(finish(onesSum(b, 0, b.length)));
    }
  });
});

describe('csumReplace', () => {
  it('matches a full recompute when a run of words changes', () => {
    const rng = new Prng(99);
    for (let i = 0; i < 2000; i++) {
      const b = rng.bytes(rng.between(4, 64) * 2);
      const hc = finish(onesSum(b, 0, b.length));
      const lo = rng.below(b.length / 2) * 2;
      const hi = lo + rng.below((b.length - lo) / 2 + 1) * 2;
      const oldSum = onesSum(b, lo, hi);
      rng.bytes(hi - lo).copy(b, lo);
      expect(csumReplace(hc, oldSum, onesSum(b, lo, hi)), `case ${i}`).to.equal(finish(onesSum(b, 0, b.length)));
    }
  });
});

describe('partialUpdate16', () => {
  it('tracks a pseudo-header sum when an address word changes', () => {
    const before = fold(pseudoHeaderSum(0x0a000001, 0x0a000002, 6, 40));
    const after = fold(pseudoHeaderSum(0x0a000001, 0x0a000063, 6, 40));
    expect(partialUpdate16(before, 0x0002, 0x0063)).to.equal(after);
  });
});

/** A random segment with options laid out to put fields at odd offsets too. */
function randomPacket(rng: Prng): Buffer {
  const options: number[][] = [];
  if (rng.chance(0.3)) options.push(opt.wscale(rng.below(15))); // 3 bytes: misaligns what follows
  if (rng.chance(0.3)) options.push(opt.nop());
  if (rng.chance(0.7)) options.push(opt.timestamps(rng.u32(), rng.u32()));
  const room = 40 - options.flat().length;
  const maxBlocks = Math.min(4, Math.floor((room - 2) / 8));
  if (maxBlocks >= 1 && rng.chance(0.6)) {
    const n = rng.between(1, maxBlocks);
    options.push(opt.sack(Array.from({ length: n }, () => [rng.u32(), rng.u32()] as [number, number])));
  }
  return buildPacket({
    src: rng.u32(),
    dst: rng.u32(),
    srcPort: rng.below(65536),
    dstPort: rng.below(65536),
    seq: rng.u32(),
    ack: rng.u32(),
    window: rng.below(65536),
    flags: rng.below(256),
    options,
    payload: rng.bytes(rng.below(300)),
  });
}

function applyRandomChange(rng: Prng, p: TcpPacket): void {
  const choice = rng.below(6);
  if (choice === 0) setSeq(p, seq(rng.u32()));
  else if (choice === 1) setAck(p, seq(rng.u32()));
  else if (choice === 2) setWindow(p, rng.below(65536));
  else if (choice === 3 && p.options.sackBlocks.length > 0) {
    setSackBlock(p, rng.below(p.options.sackBlocks.length), { left: seq(rng.u32()), right: seq(rng.u32()) });
  } else if (choice === 4 && p.options.tsVal !== undefined) setTsVal(p, rng.u32());
  else if (choice === 5 && p.options.tsEcr !== undefined) setTsEcr(p, rng.u32());
  else setSeq(p, seq(rng.u32()));
}

describe('TCP setters (property)', () => {
  it('keep the checksum equal to a full recompute over 3000 random packets and changes', () => {
    const seed = 0x1624;
    const rng = new Prng(seed);
    for (let i = 0; i < 3000; i++) {
      const buf = randomPacket(rng);
      const r = parseTcpPacket(buf);
      if (!r.ok) throw new Error(`builder made a bad packet: ${r.reason}`);
      const changes = rng.between(1, 8);
      for (let c = 0; c < changes; c++) {
        applyRandomChange(rng, r.packet);
        const len = buf.length - 20;
        const full = tcpChecksum(buf, 20, len, r.packet.ip.src, r.packet.ip.dst);
        expect(buf.readUInt16BE(36), `seed ${seed} packet ${i} change ${c}`).to.equal(full);
      }
      expect(verifyTcpChecksum(r.packet)).to.equal(true);
    }
  });

  it('leave a partial checksum equal to the pseudo-header sum', () => {
    const rng = new Prng(5);
    for (let i = 0; i < 500; i++) {
      const buf = randomPacket(rng);
      const r = parseTcpPacket(buf, { checksumPartial: true });
      if (!r.ok) throw new Error(r.reason);
      const want = fold(pseudoHeaderSum(r.packet.ip.src, r.packet.ip.dst, 6, buf.length - 20));
      buf.writeUInt16BE(want, 36);
      for (let c = 0; c < 4; c++) applyRandomChange(rng, r.packet);
      expect(buf.readUInt16BE(36)).to.equal(want);
      expect(verifyTcpChecksum(r.packet)).to.equal(true);
    }
  });
});
