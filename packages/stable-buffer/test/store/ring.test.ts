import { expect } from 'chai';
import { RecordRing } from '../../src/store/ring.js';

describe('RecordRing', () => {
  it('keeps the newest records up to its capacity', () => {
    const r = new RecordRing(4);
    for (let lsn = 10; lsn < 20; lsn++) r.push(lsn, Buffer.from([lsn]));
    expect(r.has(15)).to.equal(false);
    for (let lsn = 16; lsn < 20; lsn++) expect(r.get(lsn)[0]).to.equal(lsn);
    expect(r.has(20)).to.equal(false);
  });

  it('keeps no more than its byte bound, but always the newest record', () => {
    const r = new RecordRing(100, 250);
    for (let lsn = 0; lsn < 10; lsn++) r.push(lsn, Buffer.alloc(100, lsn));
    expect(r.has(7)).to.equal(false);
    expect(r.get(8)[0]).to.equal(8);
    expect(r.get(9)[0]).to.equal(9);
    r.push(10, Buffer.alloc(1000));
    expect(r.has(9)).to.equal(false);
    expect(r.has(10)).to.equal(true);
  });

  it('starts over after a gap in LSNs', () => {
    const r = new RecordRing(4);
    r.push(0, Buffer.from([0]));
    r.push(1, Buffer.from([1]));
    r.push(7, Buffer.from([7]));
    expect(r.has(1)).to.equal(false);
    expect(r.get(7)[0]).to.equal(7);
  });
});
