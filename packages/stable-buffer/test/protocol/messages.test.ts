import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, isFtcpError } from '../../src/errors.js';
import { PROTOCOL_VERSION, decodeFrame, decodeRecord, encodeFrame, encodeMulti, encodeRecord, recordBytesOfFrame, splitFrames, type LogRecord, type Message } from '../../src/protocol/messages.js';

// Golden files live in the source tree (test/golden), not in dist.
const goldenDir = join(dirname(fileURLToPath(import.meta.url)), '../../../test/golden');

const conn: LogRecord = {
  kind: 'conn', epoch: 3, connId: 0x0102030405, clientIp: 0x0a000001, serverIp: 0x0a000002, clientPort: 40000, serverPort: 6379,
  clientIsn: 0xfffffff0, serverIsn: 0x11223344, mss: 1460, clientWscale: 7, serverWscale: 14, sackOk: true, timestamps: true,
  clientTsval: 0xdeadbeef, serverTsval: 42,
};

/** One example of every message kind; each has a golden file. */
const examples: Record<string, Message> = {
  hello: { kind: 'hello', epoch: 0, role: 1, node: 'primary-a' },
  promote: { kind: 'promote', epoch: 3, node: 'backup-b' },
  ping: { kind: 'ping' },
  conn,
  segment: { kind: 'segment', epoch: 3, connId: 9, offset: 2 ** 40, flags: 0x11, payload: Buffer.from('GET / HTTP/1.1\r\n') },
  call: { kind: 'call', epoch: 3, stream: 'p1.t2', callNo: 77, data: Buffer.from([1, 2, 3, 4]) },
  'call-batch': { kind: 'call-batch', epoch: 3, stream: 'p1.t2', firstCallNo: 78, datas: [Buffer.from([9]), Buffer.alloc(0), Buffer.from('xyz')] },
  'client-ack': { kind: 'client-ack', epoch: 3, connId: 9, ackOffset: 123456, window: 65535 << 7, tsEcr: 0x8badf00d },
  close: { kind: 'close', epoch: 3, connId: 9, reason: 2 },
  subscribe: { kind: 'subscribe', fromLsn: 5, window: 4096, mode: 1, node: 'backup-b' },
  consumed: { kind: 'consumed', lsn: 99 },
  'read-calls': { kind: 'read-calls', stream: 'p1', fromCallNo: 1, max: 100 },
  'read-instream': { kind: 'read-instream', connId: 9, offset: 10, length: 1000 },
  status: { kind: 'status' },
  report: { kind: 'report', node: 'backup-b', role: 'backup', json: '{"mode":"hot","replicaLag":3}' },
  'hello-ok': { kind: 'hello-ok', epoch: 1, headLsn: 0 },
  promoted: {
    kind: 'promoted', epoch: 4,
    positions: { headLsn: 1000, streams: [{ stream: 'p1', lastCallNo: 10 }], conns: [{ connId: 9, stableOffset: 500, closed: true }] },
  },
  pong: { kind: 'pong' },
  'ack-conn': { kind: 'ack-conn', connId: 9 },
  'ack-segment': { kind: 'ack-segment', connId: 9, stableOffset: 1 << 20, stableSeq: 0x00000005 },
  'ack-call': { kind: 'ack-call', stream: 'p1', contiguous: 77 },
  'ack-client': { kind: 'ack-client', connId: 9 },
  'ack-close': { kind: 'ack-close', connId: 9 },
  subscribed: { kind: 'subscribed', firstLsn: 0, headLsn: 10 },
  records: { kind: 'records', entries: [{ lsn: 7, record: encodeRecord(conn) }] },
  calls: { kind: 'calls', stream: 'p1', entries: [{ callNo: 1, data: Buffer.from('a') }, { callNo: 2, data: Buffer.alloc(0) }] },
  instream: { kind: 'instream', connId: 9, offset: 0, data: Buffer.from('abc') },
  'status-reply': { kind: 'status-reply', json: '{"epoch":1}' },
  failed: { kind: 'failed', epoch: 3, node: 'primary-a', positions: { headLsn: 8, streams: [], conns: [] } },
  epoch: { kind: 'epoch', epoch: 4, node: 'backup-b' },
  error: { kind: 'error', code: 'FTCP_ERR_STALE_EPOCH', message: 'epoch 3 is over' },
};

describe('buffer protocol', () => {
  for (const [name, msg] of Object.entries(examples)) {
    it(`encodes ${name} exactly as its golden bytes`, () => {
      const file = join(goldenDir, `${name}.bin`);
      const bytes = encodeFrame(msg, 0x01020304);
      if (process.env.FTCP_UPDATE_GOLDEN === '1' || !existsSync(file)) {
        mkdirSync(goldenDir, { recursive: true });
        writeFileSync(file, bytes);
      }
      expect(bytes.equals(readFileSync(file))).to.equal(true, `${name} differs from ${file}`);
    });

    it(`decodes the golden bytes of ${name} back to the same message`, () => {
      const frame = decodeFrame(readFileSync(join(goldenDir, `${name}.bin`)));
      expect(frame.reqId).to.equal(0x01020304);
      expect(frame.msg).to.deep.equal(msg);
    });
  }

  it('turns a write frame into its record bytes in place, equal to the log encoding', () => {
    for (const rec of [examples.conn!, examples.segment!, examples.call!, examples['call-batch']!, examples['client-ack']!, examples.close!]) {
      const frame = encodeFrame(rec, 99);
      expect(recordBytesOfFrame(frame).equals(encodeRecord(rec as LogRecord))).to.equal(true, rec.kind);
    }
  });

  it('round-trips a record through the log encoding', () => {
    expect(decodeRecord(encodeRecord(conn))).to.deep.equal(conn);
  });

  const V = PROTOCOL_VERSION;
  const bad: [string, Buffer, string][] = [
    ['a frame shorter than the header', Buffer.from([V, 3, 0]), ErrorCode.TRUNCATED_FRAME],
    ['another protocol version', Buffer.from([V + 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.BAD_VERSION],
    ['an earlier protocol version', Buffer.from([V - 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.BAD_VERSION],
    ['an unknown type', Buffer.from([V, 0x55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.UNKNOWN_TYPE],
    ['non-zero reserved flags', Buffer.from([V, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.MALFORMED_FRAME],
    ['a body length past the end', Buffer.from([V, 3, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]), ErrorCode.TRUNCATED_FRAME],
    ['trailing bytes after a ping', Buffer.from([V, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7]), ErrorCode.MALFORMED_FRAME],
    ['a frame over the size limit', Buffer.alloc(5 * 1024 * 1024, 1), ErrorCode.OVERSIZED_FRAME],
  ];
  for (const [what, frame, code] of bad) {
    it(`refuses ${what} with ${code}`, () => {
      try {
        decodeFrame(frame);
        expect.fail('decoded');
      } catch (err) {
        expect(isFtcpError(err, code), String(err)).to.equal(true);
      }
    });
  }

  it('refuses every truncation of every golden frame with a coded error, never a crash', () => {
    for (const msg of Object.values(examples)) {
      const full = encodeFrame(msg, 1);
      for (let n = 0; n < full.length; n++) {
        const cut = Buffer.from(full.subarray(0, n));
        if (n >= 12) cut.writeUInt32LE(n - 12, 8); // a consistent header, so the body decoder sees the cut
        try {
          const f = decodeFrame(cut);
          // Some bodies end in a variable tail (payload, data): a shorter tail is still a valid message.
          expect(['segment', 'call', 'instream', 'status-reply', 'report']).to.include(f.msg.kind);
        } catch (err) {
          expect(isFtcpError(err), String(err)).to.equal(true);
        }
      }
    }
  });

  it('packs frames into a MULTI frame and splits them back in order', () => {
    const frames = [encodeFrame(examples.ping!, 1), encodeFrame(examples.segment!, 2), encodeFrame(examples.error!, 3)];
    const multi = encodeMulti(frames);
    const file = join(goldenDir, 'multi.bin');
    if (process.env.FTCP_UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, multi);
    expect(multi.equals(readFileSync(file))).to.equal(true);
    expect(splitFrames(multi).map((f) => decodeFrame(f).reqId)).to.deep.equal([1, 2, 3]);
    expect(splitFrames(frames[1]!)).to.deep.equal([frames[1]]);
  });

  it('refuses a MULTI frame whose inner length runs past its end', () => {
    const multi = encodeMulti([encodeFrame(examples.ping!, 1)]);
    multi.writeUInt32LE(99, 12);
    expect(() => splitFrames(multi)).to.throw().with.property('code', ErrorCode.TRUNCATED_FRAME);
  });

  it('leaves a nested MULTI to be refused on its own as an unknown type', () => {
    const nested = encodeMulti([encodeMulti([encodeFrame(examples.ping!, 1)]), encodeFrame(examples.ping!, 2)]);
    const inner = splitFrames(nested);
    expect(() => decodeFrame(inner[0]!)).to.throw().with.property('code', ErrorCode.UNKNOWN_TYPE);
    expect(decodeFrame(inner[1]!).reqId).to.equal(2);
  });

  it('carries u64 fields exactly across the 32-bit boundary up to 2^53 - 1', () => {
    for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      const f = encodeFrame({ kind: 'consumed', lsn: v });
      expect(f.readBigUInt64LE(12)).to.equal(BigInt(v));
      expect(decodeFrame(f).msg).to.deep.equal({ kind: 'consumed', lsn: v });
    }
  });

  it('refuses to encode a u64 field that is negative or not an integer', () => {
    expect(() => encodeFrame({ kind: 'consumed', lsn: -1 })).to.throw(RangeError);
    expect(() => encodeFrame({ kind: 'consumed', lsn: 1.5 })).to.throw(RangeError);
  });

  it('refuses a u64 field beyond 2^53 - 1', () => {
    const f = encodeFrame({ kind: 'consumed', lsn: 1 });
    f.writeBigUInt64LE(2n ** 60n, 12);
    expect(() => decodeFrame(f)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
    f.writeBigUInt64LE(2n ** 53n, 12);
    expect(() => decodeFrame(f)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });
});
