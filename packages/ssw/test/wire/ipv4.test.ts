import { expect } from 'chai';
import { formatIpv4Address, parseIpv4, parseIpv4Address, verifyIpv4Checksum, writeIpv4Checksum } from '../../src/wire/ipv4.js';
import { buildPacket } from '../support/builder.js';
import { fixture } from '../support/fixture.js';

describe('parseIpv4', () => {
  it('reads addresses, lengths and protocol from a captured SYN', () => {
    const r = parseIpv4(fixture('lo-syn-partial.hex'));
    if (!r.ok) throw new Error(r.reason);
    expect(r.header).to.deep.equal({ headerLength: 20, totalLength: 60, protocol: 6, src: 0x7f000001, dst: 0x7f000001 });
  });

  it('rejects a header cut short as truncated-ip-header', () => {
    expect(parseIpv4(fixture('truncated-ip.hex'))).to.deep.equal({ ok: false, reason: 'truncated-ip-header' });
  });

  it('rejects version 6 as not-ipv4', () => {
    const b = buildPacket();
    b[0] = 0x65;
    expect(parseIpv4(b)).to.deep.equal({ ok: false, reason: 'not-ipv4' });
  });

  for (const ihl of [0, 4]) {
    it(`rejects IHL ${ihl} as bad-ip-header-length`, () => {
      const b = buildPacket();
      b[0] = 0x40 | ihl;
      expect(parseIpv4(b)).to.deep.equal({ ok: false, reason: 'bad-ip-header-length' });
    });
  }

  it('rejects an IHL that runs past the buffer as truncated-ip-header', () => {
    const b = buildPacket().subarray(0, 24);
    b[0] = 0x47; // 28 bytes of header in a 24-byte buffer
    expect(parseIpv4(b)).to.deep.equal({ ok: false, reason: 'truncated-ip-header' });
  });

  for (const [what, total] of [['longer than the buffer', 1000], ['shorter than the header', 12]] as const) {
    it(`rejects a total length ${what} as bad-ip-total-length`, () => {
      const b = buildPacket();
      b.writeUInt16BE(total, 2);
      expect(parseIpv4(b)).to.deep.equal({ ok: false, reason: 'bad-ip-total-length' });
    });
  }

  it('ignores link padding past the total length', () => {
    const b = Buffer.concat([buildPacket(), Buffer.alloc(6)]);
    const r = parseIpv4(b);
    expect(r.ok && r.header.totalLength).to.equal(40);
  });

  for (const [what, value] of [['more-fragments', 0x2000], ['a fragment offset', 0x0010]] as const) {
    it(`rejects ${what} as ip-fragment`, () => {
      const b = buildPacket();
      b.writeUInt16BE(value, 6);
      expect(parseIpv4(b)).to.deep.equal({ ok: false, reason: 'ip-fragment' });
    });
  }
});

describe('verifyIpv4Checksum and writeIpv4Checksum', () => {
  it('accept a captured header and reject it after a TTL change until rewritten', () => {
    const b = fixture('lo-syn-partial.hex');
    expect(verifyIpv4Checksum(b, 20)).to.equal(true);
    b[8] = 1;
    expect(verifyIpv4Checksum(b, 20)).to.equal(false);
    writeIpv4Checksum(b, 20);
    expect(verifyIpv4Checksum(b, 20)).to.equal(true);
  });
});

describe('parseIpv4Address and formatIpv4Address', () => {
  it('round-trip 192.168.200.1', () => {
    expect(parseIpv4Address('192.168.200.1')).to.equal(0xc0a8c801);
    expect(formatIpv4Address(0xc0a8c801)).to.equal('192.168.200.1');
  });

  for (const bad of ['1.2.3', '1.2.3.256', '1.2.3.x', '1..2.3', ' 1.2.3.4']) {
    it(`rejects "${bad}"`, () => {
      expect(parseIpv4Address(bad)).to.equal(undefined);
    });
  }
});
