import { expect } from 'chai';
import { isFtcpError } from '@ftcp/stable-buffer';
import {
  advanceStable,
  ConnTable,
  connId,
  incomingWindowShift,
  markHandshakeStable,
  outgoingWindowShift,
  sackNegotiated,
  timestampsNegotiated,
} from '../src/conntable.js';
import type { ConnKey } from '../src/conntable.js';
import { SswErrorCode } from '../src/errors.js';
import { seq } from '../src/wire/seq.js';
import { SouthSideWrap } from '../src/wrap.js';
import { buildPacket, fromServer, opt } from './support/builder.js';
import { handshake } from './support/handshake.js';

const key = (port: number): ConnKey => ({ clientAddr: 0x0a000001, clientPort: port, serverAddr: 0x0a000002, serverPort: 8080 });

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('ConnTable', () => {
  it('refuses a new connection beyond maxEntries while the others are live', () => {
    const table = new ConnTable({ maxEntries: 2 });
    expect(table.open(key(1), { mode: 'record', clientIsn: seq(1) })).to.not.equal(undefined);
    expect(table.open(key(2), { mode: 'record', clientIsn: seq(1) })).to.not.equal(undefined);
    expect(table.open(key(3), { mode: 'record', clientIsn: seq(1) })).to.equal(undefined);
    expect(table.size).to.equal(2);
  });

  it('makes room by collecting closed connections when full', () => {
    const clock = manualClock();
    const table = new ConnTable({ maxEntries: 1, closeLingerMs: 10, now: clock.now });
    const c = table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    if (c === undefined) throw new Error('no room');
    table.noteFin(c, true);
    table.noteFin(c, false);
    clock.advance(10);
    expect(table.open(key(2), { mode: 'record', clientIsn: seq(1) })).to.not.equal(undefined);
    expect(table.get(key(1))).to.equal(undefined);
  });

  it('keeps a connection with FIN one way only', () => {
    const clock = manualClock();
    const table = new ConnTable({ closeLingerMs: 0, now: clock.now });
    const c = table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    if (c === undefined) throw new Error('no room');
    table.noteFin(c, true);
    clock.advance(60_000);
    expect(table.sweep()).to.equal(0);
  });

  it('collects a connection after FIN both ways and the linger', () => {
    const clock = manualClock();
    const table = new ConnTable({ closeLingerMs: 2000, now: clock.now });
    const c = table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    if (c === undefined) throw new Error('no room');
    table.noteFin(c, false);
    table.noteFin(c, true);
    clock.advance(1999);
    expect(table.sweep()).to.equal(0);
    clock.advance(1);
    expect(table.sweep()).to.equal(1);
    expect(table.size).to.equal(0);
  });

  it('removes a connection at once on RST', () => {
    const table = new ConnTable();
    const c = table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    if (c === undefined) throw new Error('no room');
    table.noteReset(c);
    expect(table.get(key(1))).to.equal(undefined);
  });

  it('keeps a connection idle past the idle timeout while the table has room: the kernel keeps it too', () => {
    const clock = manualClock();
    const table = new ConnTable({ idleTimeoutMs: 1000, now: clock.now });
    const quiet = table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    clock.advance(10 * 1000);
    expect(table.sweep()).to.equal(0);
    expect(table.get(key(1))).to.equal(quiet);
  });

  it('collects connections idle for the idle timeout when a new one needs the room, and keeps a busy one', () => {
    const clock = manualClock();
    const table = new ConnTable({ maxEntries: 2, idleTimeoutMs: 1000, now: clock.now });
    table.open(key(1), { mode: 'record', clientIsn: seq(1) });
    const busy = table.open(key(2), { mode: 'record', clientIsn: seq(1) });
    if (busy === undefined) throw new Error('no room');
    clock.advance(999);
    table.touch(busy);
    clock.advance(1);
    expect(table.open(key(3), { mode: 'record', clientIsn: seq(1) })).to.not.equal(undefined);
    expect(table.get(key(1))).to.equal(undefined);
    expect(table.get(key(2))).to.equal(busy);
    // Full again, and nobody idle long enough: the SYN is refused, no live connection evicted.
    expect(table.open(key(4), { mode: 'record', clientIsn: seq(1) })).to.equal(undefined);
    expect(table.get(key(2))).to.equal(busy);
  });

  for (const [name, opts] of [
    ['maxEntries 0', { maxEntries: 0 }],
    ['idleTimeoutMs -1', { idleTimeoutMs: -1 }],
    ['closeLingerMs 1.5', { closeLingerMs: 1.5 }],
  ] as const) {
    it(`rejects ${name} with FTCP_ERR_BAD_CONFIG`, () => {
      let caught: unknown;
      try {
        new ConnTable(opts);
      } catch (err) {
        caught = err;
      }
      expect(isFtcpError(caught, SswErrorCode.BAD_CONFIG)).to.equal(true);
    });
  }

  it('keys connections by the whole four-tuple', () => {
    expect(connId(key(1))).to.not.equal(connId(key(2)));
    expect(connId(key(1))).to.not.equal(connId({ ...key(1), serverPort: 8081 }));
  });
});

describe('connection state learned from the handshake', () => {
  it('uses window scaling, SACK and timestamps only when both sides offered them', () => {
    const wrap = new SouthSideWrap();
    const both = handshake(wrap, { wscale: 9, sack: true, ts: { client: 1, server: 2 } });
    expect(outgoingWindowShift(both)).to.equal(9);
    expect(incomingWindowShift(both)).to.equal(9);
    expect(sackNegotiated(both)).to.equal(true);
    expect(timestampsNegotiated(both)).to.equal(true);

    const one = new SouthSideWrap();
    one.incoming(buildPacket({ seq: 10, flags: 0x02, options: [opt.wscale(7), opt.sackPermitted()] }));
    const c = one.table.get({ clientAddr: 0x0a000001, clientPort: 40000, serverAddr: 0x0a000002, serverPort: 8080 });
    if (c === undefined) throw new Error('no connection');
    markHandshakeStable(c);
    one.outgoing(buildPacket(fromServer({ seq: 20, ack: 11, flags: 0x12, options: [opt.mss(1460)] })));
    expect(outgoingWindowShift(c)).to.equal(0);
    expect(sackNegotiated(c)).to.equal(false);
  });

  it('reads a window scale offer above 14 as 14', () => {
    const wrap = new SouthSideWrap();
    const c = handshake(wrap, { wscale: 15 });
    expect(outgoingWindowShift(c)).to.equal(14);
  });

  it('starts stable-seq at the client ISN and moves it past the SYN once the handshake is stable', () => {
    const table = new ConnTable();
    const c = table.open(key(1), { mode: 'record', clientIsn: seq(0xffffffff) });
    if (c === undefined) throw new Error('no room');
    expect(c.stableSeq).to.equal(0xffffffff);
    markHandshakeStable(c);
    expect(c.stableSeq).to.equal(0);
    advanceStable(c, seq(0xfffffff0));
    expect(c.stableSeq).to.equal(0);
    advanceStable(c, seq(100));
    expect(c.stableSeq).to.equal(100);
  });
});

describe('SouthSideWrap connection lifecycle', () => {
  it('refuses a SYN when the table is full and counts it', () => {
    const wrap = new SouthSideWrap({ maxEntries: 1 });
    handshake(wrap, {});
    const v = wrap.incoming(buildPacket({ srcPort: 40001, seq: 1, flags: 0x02 }));
    expect(v).to.deep.equal({ verdict: 'drop', reason: 'table-full' });
    expect(wrap.counters.tableFull).to.equal(1);
  });

  it('collects a connection closed both ways on a later packet', () => {
    const clock = manualClock();
    const wrap = new SouthSideWrap({ now: clock.now, closeLingerMs: 100, sweepIntervalMs: 50 });
    const conn = handshake(wrap, {});
    advanceStable(conn, seq(1002));
    wrap.incoming(buildPacket({ seq: 1001, ack: 5001, flags: 0x11 }));
    expect(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1002, flags: 0x11 }))).verdict).to.equal('accept');
    expect(wrap.table.size).to.equal(1);
    clock.advance(100);
    wrap.incoming(buildPacket({ srcPort: 1, seq: 1, flags: 0x10 }));
    expect(wrap.table.size).to.equal(0);
    expect(wrap.counters.collected).to.equal(1);
  });

  it('removes a connection the client resets at the next expected sequence number', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    advanceStable(conn, seq(1001));
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001 })));
    wrap.incoming(buildPacket({ seq: 1001, ack: 5001, flags: 0x14 }));
    expect(wrap.table.size).to.equal(0);
  });

  it('keeps a connection when a RST arrives off the next expected sequence number', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    advanceStable(conn, seq(1001));
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001 })));
    wrap.incoming(buildPacket({ seq: 1500, ack: 5001, flags: 0x14 }));
    expect(wrap.table.size).to.equal(1);
  });

  it('keeps a silent connection whose local kernel sends a RST', () => {
    const wrap = new SouthSideWrap({ mode: 'silent' });
    handshake(wrap, {});
    expect(wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1001, flags: 0x14 }))).verdict).to.equal('drop');
    expect(wrap.table.size).to.equal(1);
  });
});

describe('SouthSideWrap.status', () => {
  it('counts connections by mode and reports the stable-seq lag', () => {
    const wrap = new SouthSideWrap();
    const conn = handshake(wrap, {});
    advanceStable(conn, seq(1101));
    wrap.outgoing(buildPacket(fromServer({ seq: 5001, ack: 1501, window: 1000 })));
    const other = wrap.table.open(key(7), { mode: 'silent', clientIsn: seq(1) });
    expect(other).to.not.equal(undefined);
    expect(wrap.status()).to.deep.equal({ connections: 2, byMode: { record: 1, silent: 1, pending: 0 }, stableLagBytes: 400, maxStableLagBytes: 400 });
  });
});
