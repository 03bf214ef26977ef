/**
 * Sends one TCP segment, built whole, through a raw socket without a mark:
 * a client that has no socket of its own for it. Run in the client's
 * network namespace. argv: src dst srcPort dstPort seq ack payload
 */
import { RawInjector } from '../../src/nfqueue.js';
import { parseIpv4Address } from '../../src/wire/ipv4.js';
import { buildPacket, opt } from './builder.js';

const [src, dst, srcPort, dstPort, seqArg, ackArg, payload] = process.argv.slice(2) as string[];
const raw = new RawInjector(0);
raw.send(
  buildPacket({
    src: parseIpv4Address(src!)!,
    dst: parseIpv4Address(dst!)!,
    srcPort: Number(srcPort),
    dstPort: Number(dstPort),
    seq: Number(seqArg),
    ack: Number(ackArg),
    flags: 0x18,
    window: 500,
    options: [opt.nop(), opt.nop(), opt.timestamps(120, 900)],
    payload: payload ?? '',
  }),
);
raw.close();
