import { expect } from 'chai';
import { Coverage } from '../../src/store/coverage.js';

describe('Coverage', () => {
  it('advances the contiguous end over in-order ranges', () => {
    const c = new Coverage();
    expect(c.add(0, 10)).to.deep.equal([{ start: 0, end: 10 }]);
    expect(c.add(10, 25)).to.deep.equal([{ start: 10, end: 25 }]);
    expect(c.contiguousEnd).to.equal(25);
  });

  it('reports a pure duplicate as nothing new', () => {
    const c = new Coverage();
    c.add(0, 100);
    expect(c.add(10, 50)).to.deep.equal([]);
    expect(c.contiguousEnd).to.equal(100);
  });

  it('holds a range beyond a hole without advancing the contiguous end', () => {
    const c = new Coverage();
    c.add(0, 10);
    c.add(20, 30);
    expect(c.contiguousEnd).to.equal(10);
    expect(c.highEnd).to.equal(30);
    expect(c.covers(20, 30)).to.equal(true);
    expect(c.covers(5, 25)).to.equal(false);
  });

  it('fills a hole and joins the islands behind it', () => {
    const c = new Coverage();
    c.add(0, 10);
    c.add(20, 30);
    c.add(40, 50);
    c.add(30, 40);
    expect(c.contiguousEnd).to.equal(10);
    expect(c.add(5, 25)).to.deep.equal([{ start: 10, end: 20 }]);
    expect(c.contiguousEnd).to.equal(50);
    expect(c.outOfOrder).to.deep.equal([]);
  });

  it('returns only the uncovered pieces of a range that spans several islands', () => {
    const c = new Coverage();
    c.add(10, 20);
    c.add(30, 40);
    expect(c.add(0, 50)).to.deep.equal([
      { start: 0, end: 10 },
      { start: 20, end: 30 },
      { start: 40, end: 50 },
    ]);
    expect(c.contiguousEnd).to.equal(50);
  });

  it('agrees with a byte map over random ranges', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 50; round++) {
      const c = new Coverage();
      const held = new Uint8Array(300);
      for (let k = 0; k < 40; k++) {
        const s = rnd(280);
        const e = s + 1 + rnd(20);
        const fresh = c.add(s, e);
        let freshCount = 0;
        for (const f of fresh) for (let x = f.start; x < f.end; x++) {
          expect(held[x]).to.equal(0);
          freshCount++;
        }
        let expected = 0;
        for (let x = s; x < e; x++) if (!held[x]) { held[x] = 1; expected++; }
        expect(freshCount).to.equal(expected);
        let prefix = 0;
        while (held[prefix]) prefix++;
        expect(c.contiguousEnd).to.equal(prefix);
      }
    }
  });
});
