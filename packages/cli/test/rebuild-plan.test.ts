import { expect } from 'chai';
import type { ReplicatedConnection } from '@ftcp/nsw';
import type { ConnRecord } from '@ftcp/stable-buffer';
import { planRebuild, rebuiltSendStart, TSVAL_MARGIN, type LoggedConnection } from '../src/runtime/rebuild-plan.js';

const rec: ConnRecord = {
  kind: 'conn',
  epoch: 1,
  connId: 4294967297,
  clientIp: 0x0ad50002, // 10.213.0.2
  serverIp: 0x0ad50064, // 10.213.0.100
  clientPort: 40000,
  serverPort: 6379,
  clientIsn: 0xfffffff0,
  serverIsn: 0xffffff00,
  mss: 1460,
  clientWscale: 7,
  serverWscale: 9,
  sackOk: true,
  timestamps: true,
  clientTsval: 1000,
  serverTsval: 0xfffff000,
};

function replica(over: Partial<ReplicatedConnection> = {}): ReplicatedConnection {
  return { key: 1n, peer: { family: 'ipv4', address: '10.213.0.2', port: 40000 }, instreamOffset: 100, sentOffset: 500, ackedOffset: 200, unacked: Buffer.alloc(300, 7), ...over };
}

function logged(over: Partial<LoggedConnection> = {}): LoggedConnection {
  return { rec, stableDataEnd: 160, clientAckOffset: 200, clientWindow: 65535 << 7, clientTsEcr: 0, ...over };
}

describe('planRebuild', () => {
  it('puts the socket where the client stands, sequence numbers wrapping past 2^32', () => {
    const p = planRebuild(replica(), logged(), Buffer.alloc(60, 1));
    expect(p.state.sndUna).to.equal((0xffffff00 + 1 + 200) % 2 ** 32);
    expect(p.state.rcvNxt).to.equal((0xfffffff0 + 1 + 160) % 2 ** 32);
    expect(p.state).to.include({ localAddress: '10.213.0.100', localPort: 6379, peerAddress: '10.213.0.2', peerPort: 40000, mss: 1460, sndWscale: 7, rcvWscale: 9, sackOk: true, timestamps: true, peerWindow: 65535 << 7 });
    expect(p.outq.length).to.equal(300);
    expect(p.inq.length).to.equal(60);
  });

  it('resends only what the client has not acknowledged, even when the replica has not heard the ack yet', () => {
    const p = planRebuild(replica(), logged({ clientAckOffset: 450 }), Buffer.alloc(60));
    expect(p.outq.length).to.equal(50);
    expect(p.state.sndUna).to.equal((0xffffff00 + 1 + 450) % 2 ** 32);
  });

  it('never starts beyond what the replica sent: bytes the old primary sent unrecorded will be sent again', () => {
    const p = planRebuild(replica(), logged({ clientAckOffset: 900 }), Buffer.alloc(60));
    expect(p.outq.length).to.equal(0);
    expect(p.state.sndUna).to.equal((0xffffff00 + 1 + 500) % 2 ** 32);
  });

  it('tells the SSW the send edge the socket leaves repair with, not what the replica sent: the outstream follows as ordinary sends', () => {
    for (const clientAckOffset of [200, 450, 900]) {
      const p = planRebuild(replica(), logged({ clientAckOffset }), Buffer.alloc(60));
      const start = rebuiltSendStart(replica(), logged({ clientAckOffset }));
      expect((0xffffff00 + 1 + start) % 2 ** 32).to.equal(p.state.sndUna);
    }
    expect(rebuiltSendStart(replica(), logged({ clientAckOffset: 900 }))).to.equal(500);
  });

  it('starts TSvals ahead of the newest one the client echoed, wrapping', () => {
    expect(planRebuild(replica(), logged({ clientTsEcr: 0xffffffff }), Buffer.alloc(60)).state.tsVal).to.equal((0xffffffff + TSVAL_MARGIN) % 2 ** 32);
    // With no client-ack logged, the SYN-ACK's TSval is the floor.
    expect(planRebuild(replica(), logged(), Buffer.alloc(60)).state.tsVal).to.equal((0xfffff000 + TSVAL_MARGIN) % 2 ** 32);
    expect(planRebuild(replica(), logged({ rec: { ...rec, timestamps: false } }), Buffer.alloc(60)).state.tsVal).to.equal(0);
  });

  it('refuses a replica that read client bytes that were never stable', () => {
    expect(() => planRebuild(replica({ instreamOffset: 200 }), logged(), Buffer.alloc(0))).to.throw(/only 160 are stable/);
    expect(() => planRebuild(replica(), logged(), Buffer.alloc(10))).to.throw(/60 expected/);
  });

  it('advertises a window the scale can express, at most 4 MiB', () => {
    expect(planRebuild(replica(), logged(), Buffer.alloc(60)).state.ourWindow).to.equal(4 * 1024 * 1024);
    expect(planRebuild(replica(), logged({ rec: { ...rec, serverWscale: 0 } }), Buffer.alloc(60)).state.ourWindow).to.equal(65535);
  });
});
