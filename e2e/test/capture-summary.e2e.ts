/**
 * What the failover checks read from a client capture: which RSTs a client
 * could have seen. No root needed: the segments are made up.
 */
import { expect } from 'chai';
import { summarizeCapture, type Testbed } from '../src/index.js';
import { TcpFlag, type PcapCapture, type TcpSegment } from '../src/pcap.js';

const VIP = '10.213.0.100';
const CLIENT = '10.213.0.2';
const PORT = 5201;
/** The summary reads only the VIP and the hosts' MACs of a bed. */
const bed = { vip: VIP, hostRoles: ['primary'], host: () => ({ lanMac: '02:00:00:00:00:01' }) } as unknown as Testbed;

let index = 0;
function seg(time: number, fromServer: boolean, clientPort: number, flags: number): TcpSegment {
  return {
    index: index++, time, tsSec: Math.floor(time), tsNsec: 0, srcMac: fromServer ? '02:00:00:00:00:01' : '02:00:00:00:00:09', dstMac: undefined,
    src: fromServer ? VIP : CLIENT, dst: fromServer ? CLIENT : VIP, ipId: 0, ttl: 64,
    srcPort: fromServer ? PORT : clientPort, dstPort: fromServer ? clientPort : PORT, flags, seq: 1, ack: 1, window: 100, headerLength: 20, payloadLength: 0,
  };
}

function capture(segments: TcpSegment[]): PcapCapture {
  return { linkType: 1, nanosecond: false, packets: segments.length, segments, skipped: 0, truncated: false };
}

describe('the capture summary of a failover run', () => {
  it("counts a server's RST as one the client could see only before the client's own FIN on that connection", () => {
    const s = summarizeCapture(
      capture([
        seg(1.0, false, 40001, TcpFlag.SYN),
        seg(1.1, true, 40001, TcpFlag.RST), // connection 40001, client still open: seen
        seg(2.0, false, 40002, TcpFlag.FIN | TcpFlag.ACK),
        seg(2.1, true, 40002, TcpFlag.RST), // after the client's FIN on 40002: the client had closed
        seg(2.2, true, 40003, TcpFlag.RST), // 40003 never sent a FIN: seen
      ]),
      bed,
      PORT,
      undefined,
    );
    expect(s.serverRsts).to.deep.equal([1100, 2200]);
    expect(s.serverRstsAfterClientFin).to.deep.equal([2100]);
  });
});
