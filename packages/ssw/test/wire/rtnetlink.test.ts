import { expect } from 'chai';
import { ackErrno, addressMessage } from '../../src/wire/rtnetlink.js';

describe('rtnetlink address messages', () => {
  it('builds RTM_NEWADDR for 10.1.2.3/32 on device 7 as create-or-replace with an ack, byte for byte', () => {
    const golden = Buffer.from(
      [
        '28000000', '1400', '0505', '2a000000', '00000000', // nlmsghdr: len 40, RTM_NEWADDR, REQUEST|ACK|REPLACE|CREATE, seq 42, pid 0
        '02', '20', '00', '00', '07000000', // ifaddrmsg: AF_INET, /32, no flags, scope global, ifindex 7
        '0800', '0200', '0a010203', // IFA_LOCAL 10.1.2.3
        '0800', '0100', '0a010203', // IFA_ADDRESS 10.1.2.3
      ].join(''),
      'hex',
    );
    expect(addressMessage('add', 7, 0x0a010203, 42).toString('hex')).to.equal(golden.toString('hex'));
  });

  it('builds RTM_DELADDR naming only the local address, so any prefix matches, byte for byte', () => {
    const golden = ['20000000', '1500', '0500', '01000000', '00000000', '02', '20', '00', '00', '07000000', '0800', '0200', '0a010203'].join('');
    expect(addressMessage('delete', 7, 0x0a010203, 1).toString('hex')).to.equal(golden);
  });

  it("reads the errno of the kernel's ack for its own request only", () => {
    const ack = (seq: number, error: number): Buffer => {
      const b = Buffer.alloc(36);
      b.writeUInt32LE(36, 0);
      b.writeUInt16LE(2, 4);
      b.writeUInt32LE(seq, 8);
      b.writeInt32LE(error, 16);
      return b;
    };
    expect(ackErrno(ack(5, 0), 5)).to.equal(0);
    expect(ackErrno(ack(5, -17), 5)).to.equal(17);
    expect(ackErrno(ack(4, 0), 5)).to.equal(undefined);
    expect(ackErrno(Buffer.alloc(8), 5)).to.equal(undefined);
  });
});
