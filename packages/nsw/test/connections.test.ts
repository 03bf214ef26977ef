import { expect } from 'chai';
import { ConnectionState, decodeSockaddr } from '../src/connections.js';
import { ErrorCode } from '../src/errors.js';

function sockaddrIn(ip: number[], port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(2, 0);
  b.writeUInt16BE(port, 2);
  Buffer.from(ip).copy(b, 4);
  return b;
}

describe('decodeSockaddr', () => {
  it('reads an IPv4 peer with its port in network order', () => {
    expect(decodeSockaddr(sockaddrIn([10, 0, 0, 1], 40000))).to.deep.equal({ family: 'ipv4', address: '10.0.0.1', port: 40000 });
  });

  it('reads an IPv6 peer and writes its address in RFC 5952 form', () => {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(10, 0);
    b.writeUInt16BE(443, 2);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(b, 8);
    expect(decodeSockaddr(b)).to.deep.equal({ family: 'ipv6', address: '2001:db8::1', port: 443 });
  });

  for (const [what, buf] of [
    ['a unix address', Buffer.from([1, 0, 0x2f, 0x74])],
    ['a truncated IPv4 address', sockaddrIn([1, 2, 3, 4], 1).subarray(0, 8)],
  ] as const) {
    it(`refuses ${what} with ${ErrorCode.MALFORMED_FRAME}`, () => {
      expect(() => decodeSockaddr(buf)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
    });
  }
});

describe('ConnectionState', () => {
  it('keeps sent bytes until the client acknowledges them, across chunk edges', () => {
    const c = new ConnectionState(1n, { family: 'ipv4', address: '10.0.0.1', port: 1 });
    c.sent(Buffer.from('hello '));
    c.sent(Buffer.from('world'));
    c.acked(8);
    expect(c.snapshot()).to.deep.include({ sentOffset: 11, ackedOffset: 8 });
    expect(c.snapshot().unacked.toString()).to.equal('rld');
  });

  it('ignores an acknowledgement that goes backwards and clamps one past what was sent', () => {
    const c = new ConnectionState(1n, { family: 'ipv4', address: '10.0.0.1', port: 1 });
    c.sent(Buffer.from('abc'));
    c.acked(2);
    c.acked(1);
    expect(c.snapshot().unacked.toString()).to.equal('c');
    c.acked(99);
    expect(c.snapshot()).to.deep.include({ ackedOffset: 3 });
    expect(c.snapshot().unacked.length).to.equal(0);
  });

  it('applies an acknowledgement that came before the lagging replica sent those bytes once it sends them', () => {
    const c = new ConnectionState(1n, { family: 'ipv4', address: '10.0.0.1', port: 1 });
    c.sent(Buffer.from('ab'));
    c.acked(5);
    c.sent(Buffer.from('cdefg'));
    expect(c.snapshot()).to.deep.include({ sentOffset: 7, ackedOffset: 5 });
    expect(c.snapshot().unacked.toString()).to.equal('fg');
  });
});
