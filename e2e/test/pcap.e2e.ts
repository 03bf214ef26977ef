import { expect } from 'chai';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LinkType,
  TcpFlag,
  Testbed,
  TestbedError,
  TestbedErrorCode,
  flagString,
  nextPort,
  parsePcap,
  readPcap,
  run,
  startPeer,
} from '../src/index.js';

interface FrameSpec {
  readonly flags: number;
  readonly seq: number;
  readonly ack: number;
  readonly payload: number;
  readonly vlan?: boolean;
  readonly ipOptions?: number;
  readonly tcpOptions?: number;
  readonly etherType?: number;
}

/** An Ethernet frame 02:..:01 -> 02:..:02 carrying 10.0.0.1:1234 -> 10.0.0.2:80. */
function frame(f: FrameSpec): Uint8Array {
  const ipHl = 20 + (f.ipOptions ?? 0);
  const tcpHl = 20 + (f.tcpOptions ?? 0);
  const l2 = f.vlan === true ? 18 : 14;
  const b = Buffer.alloc(l2 + ipHl + tcpHl + f.payload);
  Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]).copy(b, 0);
  if (f.vlan === true) {
    b.writeUInt16BE(0x8100, 12);
    b.writeUInt16BE(7, 14);
    b.writeUInt16BE(f.etherType ?? 0x0800, 16);
  } else b.writeUInt16BE(f.etherType ?? 0x0800, 12);
  b.writeUInt8(0x40 | (ipHl / 4), l2);
  b.writeUInt16BE(ipHl + tcpHl + f.payload, l2 + 2);
  b.writeUInt16BE(0x1234, l2 + 4);
  b.writeUInt8(64, l2 + 8);
  b.writeUInt8(6, l2 + 9);
  Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(b, l2 + 12);
  const t = l2 + ipHl;
  b.writeUInt16BE(1234, t);
  b.writeUInt16BE(80, t + 2);
  b.writeUInt32BE(f.seq, t + 4);
  b.writeUInt32BE(f.ack, t + 8);
  b.writeUInt8((tcpHl / 4) << 4, t + 12);
  b.writeUInt8(f.flags, t + 13);
  b.writeUInt16BE(502, t + 14);
  return b;
}

/** A classic pcap file with the given records. */
function pcapFile(opts: { le: boolean; nano: boolean; linkType?: number; snap?: number }, records: Array<{ sec: number; frac: number; frame: Uint8Array }>): Buffer {
  const w32 = (b: Buffer, v: number, o: number): void => {
    if (opts.le) b.writeUInt32LE(v >>> 0, o);
    else b.writeUInt32BE(v >>> 0, o);
  };
  const head = Buffer.alloc(24);
  w32(head, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w32(head, (4 << 16) | 2, 4); // version 2.4, halves swap with byte order but nobody reads them
  w32(head, 262144, 16);
  w32(head, opts.linkType ?? LinkType.ETHERNET, 20);
  const parts = [head];
  for (const r of records) {
    const snap = Math.min(r.frame.byteLength, opts.snap ?? Infinity);
    const rh = Buffer.alloc(16);
    w32(rh, r.sec, 0);
    w32(rh, r.frac, 4);
    w32(rh, snap, 8);
    w32(rh, r.frame.byteLength, 12);
    parts.push(rh, Buffer.from(r.frame.subarray(0, snap)));
  }
  return Buffer.concat(parts);
}

describe('the pcap reader', function () {
  for (const le of [true, false]) {
    for (const nano of [true, false]) {
      it(`reads a ${le ? 'little' : 'big'}-endian file with ${nano ? 'nano' : 'micro'}second timestamps`, function () {
        const file = pcapFile({ le, nano }, [
          { sec: 1_700_000_000, frac: nano ? 123_456_789 : 123_456, frame: frame({ flags: TcpFlag.SYN, seq: 0xffffffff, ack: 0, payload: 0 }) },
          { sec: 1_700_000_001, frac: 0, frame: frame({ flags: TcpFlag.PSH | TcpFlag.ACK, seq: 0, ack: 0x80000000, payload: 100 }) },
        ]);
        const cap = parsePcap(file);
        expect(cap.nanosecond).to.equal(nano);
        expect(cap.packets).to.equal(2);
        expect(cap.truncated).to.equal(false);
        const [syn, data] = cap.segments;
        expect(syn).to.include({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1234, dstPort: 80, seq: 0xffffffff, flags: TcpFlag.SYN, payloadLength: 0, window: 502, ipId: 0x1234, ttl: 64 });
        expect(syn?.srcMac).to.equal('02:00:00:00:00:01');
        expect(syn?.dstMac).to.equal('02:00:00:00:00:02');
        expect(syn?.tsNsec).to.equal(nano ? 123_456_789 : 123_456_000);
        expect(data).to.include({ seq: 0, ack: 0x80000000, payloadLength: 100, time: 1_700_000_001 });
      });
    }
  }

  it('takes the payload length from the IP header when the snap length cut the packet', function () {
    const cap = parsePcap(pcapFile({ le: true, nano: false, snap: 80 }, [{ sec: 1, frac: 0, frame: frame({ flags: TcpFlag.ACK, seq: 1, ack: 1, payload: 1400 }) }]));
    expect(cap.segments[0]?.payloadLength).to.equal(1400);
  });

  it('reads VLAN tags, IP options and TCP options', function () {
    const cap = parsePcap(
      pcapFile({ le: true, nano: false }, [{ sec: 1, frac: 0, frame: frame({ flags: TcpFlag.RST, seq: 9, ack: 0, payload: 5, vlan: true, ipOptions: 8, tcpOptions: 12 }) }]),
    );
    expect(cap.segments[0]).to.include({ seq: 9, flags: TcpFlag.RST, headerLength: 32, payloadLength: 5, dstPort: 80 });
  });

  it('counts ARP and malformed frames as skipped instead of failing', function () {
    const bad = frame({ flags: 0, seq: 0, ack: 0, payload: 0 });
    bad[14] = 0x43; // IHL 3: shorter than the minimum header
    const cap = parsePcap(
      pcapFile({ le: true, nano: false }, [
        { sec: 1, frac: 0, frame: frame({ flags: 0, seq: 0, ack: 0, payload: 0, etherType: 0x0806 }) },
        { sec: 1, frac: 0, frame: bad },
        { sec: 1, frac: 0, frame: new Uint8Array(10) },
      ]),
    );
    expect(cap).to.include({ packets: 3, skipped: 3 });
    expect(cap.segments).to.deep.equal([]);
  });

  it('stops quietly at a record cut short by a killed tcpdump', function () {
    const whole = pcapFile({ le: true, nano: false }, [
      { sec: 1, frac: 0, frame: frame({ flags: TcpFlag.ACK, seq: 1, ack: 1, payload: 0 }) },
      { sec: 2, frac: 0, frame: frame({ flags: TcpFlag.ACK, seq: 2, ack: 1, payload: 0 }) },
    ]);
    const cap = parsePcap(whole.subarray(0, whole.byteLength - 7));
    expect(cap).to.include({ packets: 1, truncated: true });
  });

  it('rejects a file that is not classic pcap with FTCP_E2E_BAD_PCAP', function () {
    for (const bytes of [Buffer.alloc(10), Buffer.from('0a0d0d0a' + '00'.repeat(40), 'hex')]) {
      let err: unknown;
      try {
        parsePcap(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(TestbedError);
      expect((err as TestbedError).code).to.equal(TestbedErrorCode.BAD_PCAP);
    }
  });

  it('reads Linux cooked captures (tcpdump -i any)', function () {
    const eth = frame({ flags: TcpFlag.SYN | TcpFlag.ACK, seq: 5, ack: 6, payload: 0 });
    const sll = Buffer.alloc(16 + eth.byteLength - 14);
    sll.writeUInt16BE(4, 0); // outgoing
    sll.writeUInt16BE(1, 2); // ARPHRD_ETHER
    sll.writeUInt16BE(6, 4);
    Buffer.from(eth.subarray(6, 12)).copy(sll, 6);
    sll.writeUInt16BE(0x0800, 14);
    Buffer.from(eth.subarray(14)).copy(sll, 16);
    const cap = parsePcap(pcapFile({ le: true, nano: false, linkType: LinkType.LINUX_SLL }, [{ sec: 1, frac: 0, frame: sll }]));
    expect(cap.segments[0]).to.include({ seq: 5, ack: 6, srcMac: '02:00:00:00:00:01', dstMac: undefined });
    expect(flagString(cap.segments[0]?.flags ?? 0)).to.equal('S.');
  });

  describe('on a real capture', function () {
    let bed: Testbed | undefined;
    let dir: string | undefined;
    after(async function () {
      this.timeout(10_000);
      await bed?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('finds the handshake, every payload byte each way, both FINs and the senders\' MACs, as tcpdump itself decodes them', async function () {
      this.timeout(15_000);
      // Offloads off: every segment is at most one MSS, as on a real wire.
      bed = await Testbed.create({ disableOffloads: true });
      dir = mkdtempSync(join(tmpdir(), 'ftcp-pcap-'));
      const file = join(dir, 'client.pcap');
      const port = nextPort();
      const cap = await bed.capture('client', { filter: `tcp port ${port}`, file });
      const server = startPeer(bed, 'primary', ['serve', '--port', String(port), '--bind', bed.vip, '--mode', 'echo']);
      await server.waitForEvent('listening', 5000);
      const client = startPeer(bed, 'client', ['connect', '--host', bed.vip, '--port', String(port)]);
      await client.waitForEvent('connected', 3000);
      client.writeLine('send 100000');
      await client.waitForLine((l) => l.includes('"total":100000'), 5000);
      client.writeLine('end');
      await client.waitForEvent('close', 3000);
      const result = await cap.stop();
      const segs = result.segments;
      const vip = bed.vip;
      const up = segs.filter((s) => s.dst === vip);
      const down = segs.filter((s) => s.src === vip);
      expect(flagString(segs[0]?.flags ?? 0)).to.equal('S');
      expect(flagString(segs[1]?.flags ?? 0)).to.equal('S.');
      expect(segs[1]?.ack).to.equal(((segs[0]?.seq ?? 0) + 1) >>> 0);
      // Distinct bytes by sequence number: a retransmission (a loaded machine
      // makes them) carries bytes already counted.
      const distinct = (ss: typeof segs): number =>
        ss.filter((s, i, a) => s.payloadLength > 0 && a.findIndex((t) => t.seq === s.seq && t.payloadLength === s.payloadLength) === i).reduce((n, s) => n + s.payloadLength, 0);
      expect(distinct(up)).to.equal(100_000);
      expect(distinct(down)).to.equal(100_000);
      expect(Math.max(...segs.map((s) => s.payloadLength))).to.be.at.most(1448);
      expect(up.filter((s) => s.flags & TcpFlag.FIN)).to.have.length(1);
      expect(down.filter((s) => s.flags & TcpFlag.FIN)).to.have.length(1);
      expect(new Set(up.map((s) => s.srcMac))).to.deep.equal(new Set([bed.host('client').lanMac]));
      expect(new Set(down.map((s) => s.srcMac))).to.deep.equal(new Set([bed.host('primary').lanMac]));
      for (let i = 1; i < segs.length; i++) expect(segs[i]!.time).to.be.at.least(segs[i - 1]!.time);

      // tcpdump's own decoding of the same file, line by line.
      const text = (await run('tcpdump', ['-r', file, '-n', '-tt', '-S'])).stdout.trim().split('\n');
      expect(text).to.have.length(segs.length);
      expect(await readPcap(file)).to.deep.equal(result);
      text.forEach((line, i) => {
        const s = segs[i]!;
        const m = /^(\d+\.\d+) IP (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]+)\](?:, seq (\d+)(?::\d+)?)?(?:, ack (\d+))?, win (\d+).*, length (\d+)/.exec(line);
        expect(m, line).to.not.equal(null);
        const [, time, src, sport, dst, dport, flags, seq, ack, win, len] = m!;
        expect(s.time.toFixed(6)).to.equal(time);
        expect([s.src, s.srcPort, s.dst, s.dstPort]).to.deep.equal([src, Number(sport), dst, Number(dport)]);
        expect(flagString(s.flags)).to.equal(flags);
        if (seq !== undefined) expect(s.seq).to.equal(Number(seq));
        if (ack !== undefined) expect(s.ack).to.equal(Number(ack));
        expect(s.window).to.equal(Number(win));
        expect(s.payloadLength).to.equal(Number(len));
      });
    });
  });
});
