/**
 * Drive a real handshake through a SouthSideWrap with built packets, so
 * rewrite tests start from state the wrap learned itself.
 */
import { expect } from 'chai';
import type { Connection } from '../../src/conntable.js';
import { markHandshakeStable } from '../../src/conntable.js';
import type { SouthSideWrap } from '../../src/wrap.js';
import { buildPacket, fromServer, opt } from './builder.js';

export interface HandshakeSpec {
  clientIsn?: number;
  serverIsn?: number;
  /** Window shift offered by both sides; undefined offers none. */
  wscale?: number;
  sack?: boolean;
  /** Offer timestamps, with these TSvals for client and server. */
  ts?: { client: number; server: number };
  /** The SYN-ACK's (unscaled) window; small by default so later scaled windows exceed it. */
  synackWindow?: number;
}

/**
 * Run SYN, SYN-ACK, ACK through `wrap`; mark the handshake stable before
 * the SYN-ACK. Client 10.0.0.1:40000, server 10.0.0.2:8080.
 */
export function handshake(wrap: SouthSideWrap, spec: HandshakeSpec = {}): Connection {
  const clientIsn = spec.clientIsn ?? 1000;
  const serverIsn = spec.serverIsn ?? 5000;
  const synOpts = (tsv: number | undefined, tse: number): number[][] => [
    opt.mss(1460),
    ...(spec.sack ? [opt.sackPermitted()] : []),
    ...(tsv !== undefined ? [opt.timestamps(tsv, tse)] : []),
    ...(spec.wscale !== undefined ? [opt.nop(), opt.wscale(spec.wscale)] : []),
  ];
  const syn = wrap.incoming(buildPacket({ seq: clientIsn, flags: 0x02, window: 64240, options: synOpts(spec.ts?.client, 0) }));
  expect(syn.verdict).to.equal('accept');
  if (syn.verdict !== 'accept' || syn.conn === undefined) throw new Error('no connection');
  const conn = syn.conn;
  markHandshakeStable(conn);
  const synack = wrap.outgoing(
    buildPacket(fromServer({ seq: serverIsn, ack: clientIsn + 1, flags: 0x12, window: spec.synackWindow ?? 1000, options: synOpts(spec.ts?.server, spec.ts?.client ?? 0) })),
  );
  // A silent wrap drops the SYN-ACK; a recording one sends it.
  expect(synack.verdict).to.equal(conn.mode === 'silent' ? 'drop' : 'accept');
  const ack = wrap.incoming(
    buildPacket({
      seq: clientIsn + 1,
      ack: serverIsn + 1,
      flags: 0x10,
      window: 502,
      options: spec.ts ? [opt.nop(), opt.nop(), opt.timestamps(spec.ts.client + 1, spec.ts.server)] : [],
    }),
  );
  expect(ack.verdict).to.equal('accept');
  return conn;
}
