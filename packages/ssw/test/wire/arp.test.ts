import { expect } from 'chai';
import { ARP_FRAME, gratuitousArpFrame } from '../../src/wire/arp.js';

describe('gratuitousArpFrame', () => {
  const mac = Buffer.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
  const frame = gratuitousArpFrame(mac, 0x0a000064); // 10.0.0.100

  it('broadcasts an ARP request from the device MAC', () => {
    expect([...frame.subarray(ARP_FRAME.DST_MAC, ARP_FRAME.DST_MAC + 6)]).to.deep.equal(Array(6).fill(0xff));
    expect(frame.subarray(ARP_FRAME.SRC_MAC, ARP_FRAME.SRC_MAC + 6).equals(mac)).to.equal(true);
    expect(frame.readUInt16BE(ARP_FRAME.ETHERTYPE)).to.equal(0x0806);
    expect(frame.readUInt16BE(ARP_FRAME.HTYPE)).to.equal(1);
    expect(frame.readUInt16BE(ARP_FRAME.PTYPE)).to.equal(0x0800);
    expect([frame[ARP_FRAME.HLEN], frame[ARP_FRAME.PLEN]]).to.deep.equal([6, 4]);
    expect(frame.readUInt16BE(ARP_FRAME.OPER)).to.equal(1);
  });

  it('names the address as both sender and target, the MAC as sender, and a zero target MAC (RFC 5227 2.3)', () => {
    expect(frame.subarray(ARP_FRAME.SHA, ARP_FRAME.SHA + 6).equals(mac)).to.equal(true);
    expect(frame.readUInt32BE(ARP_FRAME.SPA)).to.equal(0x0a000064);
    expect(frame.readUInt32BE(ARP_FRAME.TPA)).to.equal(0x0a000064);
    expect([...frame.subarray(ARP_FRAME.THA, ARP_FRAME.THA + 6)]).to.deep.equal(Array(6).fill(0));
  });

  it('pads to the 60-byte Ethernet minimum with zeros', () => {
    expect(frame.length).to.equal(60);
    expect([...frame.subarray(ARP_FRAME.ARP_END)]).to.deep.equal(Array(18).fill(0));
  });

  it('refuses a hardware address that is not 6 bytes', () => {
    expect(() => gratuitousArpFrame(Buffer.alloc(8), 1)).to.throw(RangeError);
  });
});
