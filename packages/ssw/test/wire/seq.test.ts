import { expect } from 'chai';
import {
  offsetToSeq,
  seq,
  seqAdd,
  seqDelta,
  seqDiff,
  seqForward,
  seqGe,
  seqGt,
  seqInRange,
  seqLe,
  seqLt,
  seqMax,
  seqMin,
  seqToOffset,
  u32Add,
  u32Diff,
  u32Max,
} from '../../src/wire/seq.js';
import { Prng } from '../support/prng.js';

describe('seq', () => {
  it('reduces any integer modulo 2^32', () => {
    expect(seq(-1)).to.equal(0xffffffff);
    expect(seq(0x100000000)).to.equal(0);
    expect(seq(0x100000005)).to.equal(5);
  });
});

describe('seqDelta', () => {
  it('reads 0xffffffff as -1 and 0x80000000 as -2^31', () => {
    expect(seqDelta(0xffffffff)).to.equal(-1);
    expect(seqDelta(0x80000000)).to.equal(-0x80000000);
    expect(seqDelta(0x7fffffff)).to.equal(0x7fffffff);
  });
});

describe('seqLt', () => {
  it('treats 0xffffffff as before 0x00000001', () => {
    expect(seqLt(seq(0xffffffff), seq(1))).to.equal(true);
    expect(seqLt(seq(1), seq(0xffffffff))).to.equal(false);
  });

  it('is false for equal numbers', () => {
    expect(seqLt(seq(7), seq(7))).to.equal(false);
  });

  it('orders numbers less than 2^31 apart by their forward distance', () => {
    const rng = new Prng(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const a = seq(rng.u32());
      const d = rng.between(1, 0x7fffffff);
      const b = seqAdd(a, d);
      expect(seqLt(a, b), `a=${a} d=${d}`).to.equal(true);
      expect(seqLt(b, a), `a=${a} d=${d}`).to.equal(false);
    }
  });
});

describe('seqLe, seqGt and seqGe', () => {
  it('agree with seqLt across the wrap', () => {
    const a = seq(0xfffffff0);
    const b = seq(0x10);
    expect(seqLe(a, b)).to.equal(true);
    expect(seqLe(a, a)).to.equal(true);
    expect(seqGt(b, a)).to.equal(true);
    expect(seqGt(a, a)).to.equal(false);
    expect(seqGe(b, a)).to.equal(true);
    expect(seqGe(a, b)).to.equal(false);
  });
});

describe('seqMax and seqMin', () => {
  it('pick 0x5 over 0xfffffffb as the later number', () => {
    expect(seqMax(seq(0xfffffffb), seq(5))).to.equal(5);
    expect(seqMin(seq(0xfffffffb), seq(5))).to.equal(0xfffffffb);
  });
});

describe('seqAdd', () => {
  it('wraps 0xffffffff + 1 to 0', () => {
    expect(seqAdd(seq(0xffffffff), 1)).to.equal(0);
  });

  it('subtracts with a negative operand across the wrap', () => {
    expect(seqAdd(seq(2), -5)).to.equal(0xfffffffd);
  });

  it('accepts byte counts larger than 2^32', () => {
    expect(seqAdd(seq(10), 0x100000000 * 3 + 4)).to.equal(14);
  });
});

describe('seqDiff', () => {
  it('measures 0x00000002 - 0xfffffffe as 4', () => {
    expect(seqDiff(seq(2), seq(0xfffffffe))).to.equal(4);
    expect(seqDiff(seq(0xfffffffe), seq(2))).to.equal(-4);
  });

  it('inverts seqAdd for every delta in the signed range', () => {
    const rng = new Prng(42);
    for (let i = 0; i < 2000; i++) {
      const a = seq(rng.u32());
      const d = seqDelta(rng.u32());
      expect(seqDiff(seqAdd(a, d), a)).to.equal(d);
    }
  });
});

describe('seqForward', () => {
  it('measures the forward distance across the wrap as an unsigned number', () => {
    expect(seqForward(seq(0x10), seq(0xfffffff0))).to.equal(0x20);
    expect(seqForward(seq(0), seq(1))).to.equal(0xffffffff);
  });
});

describe('seqInRange', () => {
  it('includes lo and excludes hi', () => {
    expect(seqInRange(seq(10), seq(10), seq(20))).to.equal(true);
    expect(seqInRange(seq(19), seq(10), seq(20))).to.equal(true);
    expect(seqInRange(seq(20), seq(10), seq(20))).to.equal(false);
    expect(seqInRange(seq(9), seq(10), seq(20))).to.equal(false);
  });

  it('holds a range that crosses 0xffffffff -> 0', () => {
    const lo = seq(0xfffffff0);
    const hi = seq(0x10);
    expect(seqInRange(seq(0xffffffff), lo, hi)).to.equal(true);
    expect(seqInRange(seq(0), lo, hi)).to.equal(true);
    expect(seqInRange(seq(0xf), lo, hi)).to.equal(true);
    expect(seqInRange(seq(0x10), lo, hi)).to.equal(false);
    expect(seqInRange(seq(0xffffffef), lo, hi)).to.equal(false);
  });

  it('contains nothing when lo equals hi', () => {
    expect(seqInRange(seq(5), seq(5), seq(5))).to.equal(false);
  });
});

describe('offsetToSeq and seqToOffset', () => {
  it('map offset 0 to ISN + 1', () => {
    expect(offsetToSeq(0, seq(1000))).to.equal(1001);
    expect(seqToOffset(seq(1001), seq(1000), 0)).to.equal(0);
  });

  it('map the SYN itself to offset -1', () => {
    expect(seqToOffset(seq(0xffffffff), seq(0xffffffff), 0)).to.equal(-1);
  });

  it('carry an offset across the wrap when the ISN is near 0xffffffff', () => {
    const isn = seq(0xfffffff0);
    expect(offsetToSeq(0x20, isn)).to.equal(0x11);
    expect(seqToOffset(seq(0x11), isn, 0)).to.equal(0x20);
  });

  it('round-trip offsets far beyond 2^32, up to 2^53, near a known offset', () => {
    const rng = new Prng(7);
    const isn = seq(rng.u32());
    for (const base of [0, 2 ** 32 - 5, 2 ** 40 + 17, 2 ** 53 - 2 ** 31 - 1]) {
      for (let i = 0; i < 200; i++) {
        const offset = base + rng.below(2 ** 31);
        const near = Math.max(0, offset + rng.between(-(2 ** 30), 2 ** 30));
        const s = offsetToSeq(offset, isn);
        expect(seqToOffset(s, isn, near), `offset=${offset} near=${near}`).to.equal(offset);
      }
    }
  });
});

describe('u32Add and u32Diff', () => {
  it('wrap timestamp values like sequence numbers', () => {
    expect(u32Add(0xfffffff0, 0x20)).to.equal(0x10);
    expect(u32Diff(0x10, 0xfffffff0)).to.equal(0x20);
    expect(u32Add(5, -10)).to.equal(0xfffffffb);
  });
});

describe('u32Max', () => {
  it('takes a timestamp just past the wrap as later than one just before it', () => {
    expect(u32Max(0xfffffff0, 0x10)).to.equal(0x10);
    expect(u32Max(0x10, 0xfffffff0)).to.equal(0x10);
  });

  it('returns the later of two values less than 2^31 apart, as unsigned', () => {
    expect(u32Max(5, 7)).to.equal(7);
    expect(u32Max(-1, 3)).to.equal(3);
    expect(u32Max(0x7fffffff, 0x80000000)).to.equal(0x80000000);
  });
});
