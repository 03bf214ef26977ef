import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, isFtcpError } from '../src/errors.js';
import { NswErrorCode } from '../src/errors.js';
import { MAX_REBUILD_QUEUE } from '../src/rebuild.js';
import {
  AdoptStep,
  CallFlag,
  CallKind,
  FrameSplitter,
  MAX_FRAME,
  MAX_IO,
  MAX_IO_BODY,
  MAX_PAYLOAD,
  MAX_REBUILD_BODY,
  NSW_HEADER_SIZE,
  NSW_PROTOCOL_VERSION,
  ShimMode,
  MAX_BATCH,
  callRecordOf,
  checkHeader,
  doneOf,
  encodeRecords,
  decodeCallData,
  decodeMessage,
  encodeCallData,
  encodeLockPosition,
  encodeMessage,
  sendHash,
  type NswMessage,
} from '../src/protocol.js';
import { compileC, goldenDir, tempDir } from './helpers.js';

/** Bytes of a long replicated read or write, the same pattern test/c/golden_check.c makes. */
function longBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

const clockPayload = Buffer.alloc(16);
clockPayload.writeBigInt64LE(1700000000n, 0);
clockPayload.writeBigInt64LE(123456789n, 8);

/** One example of every message; each has a golden file that test/c/golden_check.c checks too. */
const examples: Record<string, NswMessage> = {
  hello: { type: 'hello', pid: 4242, ppid: 1, mode: ShimMode.RECORD, name: 'p/f1/t2' },
  'call-clock': { type: 'call', call: { callNo: 7, kind: CallKind.CLOCK_GETTIME, flags: 0, errno: 0, result: 0n, arg: 1n, payload: clockPayload } },
  'call-random': {
    type: 'call',
    call: { callNo: 8, kind: CallKind.GETRANDOM, flags: 0, errno: 0, result: 4n, arg: 4n, payload: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
  },
  'call-error': { type: 'call', call: { callNo: 9, kind: CallKind.GETRANDOM, flags: 0, errno: 11, result: -1n, arg: 4096n, payload: Buffer.alloc(0) } },
  wait: { type: 'wait', callNo: 9 },
  play: {
    type: 'play',
    call: { callNo: 10, kind: CallKind.PTHREAD_CREATE, flags: CallFlag.COMPARE, errno: 0, result: 0n, arg: 0n, payload: Buffer.alloc(0) },
  },
  stable: { type: 'stable', callNo: 9 },
  result: { type: 'result', call: { callNo: 7, kind: CallKind.CLOCK_GETTIME, flags: 0, errno: 0, result: 0n, arg: 1n, payload: clockPayload } },
  error: { type: 'error', code: 'FTCP_ERR_DIVERGENCE', message: 'stream p: call 3 was getpid on the primary, time here' },
  adopt: { type: 'adopt', fd: 9, key: 0x0123456789abcdefn },
  // Every field distinct and a send sequence number just before the wrap, so a swapped or narrowed field shows.
  rebuild: {
    type: 'rebuild',
    state: {
      localAddress: '10.0.0.1', localPort: 6379, peerAddress: '192.168.1.20', peerPort: 51234, sndUna: 0xfffffff0, rcvNxt: 123456789, mss: 1448,
      sndWscale: 7, rcvWscale: 9, sackOk: true, timestamps: true, tsVal: 0x80000001, peerWindow: 8388480, ourWindow: 262144,
    },
    inq: Buffer.from('GET /b\r\n'),
    outq: Buffer.from('HTTP/1.1 200 OK\r\n'),
  },
  'adopted-ok': { type: 'adopted', fd: 9, newFd: 9, key: 0x0123456789abcdefn, errno: 0, step: AdoptStep.NONE, stepName: '' },
  'adopted-failed': { type: 'adopted', fd: 9, newFd: -1, key: 0x0123456789abcdefn, errno: 99, step: 5, stepName: 'bind' },
  // A replicated read and write longer than any record: the client's bytes in a RESULT, the replica's in a DONE.
  'result-recv-long': { type: 'result', call: { callNo: 11, kind: CallKind.RECV, flags: 0, errno: 0, result: 10000n, arg: 65536n, payload: longBytes(10000) } },
  'done-send-long': { type: 'done', call: { callNo: 12, kind: CallKind.SEND, flags: 0, errno: 0, result: 9000n, arg: 9000n, payload: longBytes(9000) } },
  // A blocking flock (LOCK_EX) whose attempt at position 3 found the lock held, granted at position 7; then the replica's attempt.
  'call-lock': {
    type: 'call',
    call: { callNo: 13, kind: CallKind.LOCK, flags: 0, errno: 0, result: 0n, arg: 0x10002n, payload: encodeLockPosition({ domain: 0x0123456789abcdefn, attempt: 3, grant: 7 }) },
  },
  'done-lock-try': { type: 'done', call: { callNo: 13, kind: CallKind.LOCK, flags: CallFlag.TRY, errno: 11, result: -1n, arg: 0x10002n, payload: Buffer.alloc(0) } },
  // posix_spawn: success, the child's pid.
  'call-spawn': { type: 'call', call: { callNo: 14, kind: CallKind.SPAWN, flags: 0, errno: 0, result: 0n, arg: 0n, payload: Buffer.from([0x39, 0x30, 0, 0]) } },
  // Playback from a queue: a clock read whose queue is empty, the batch that answers it, and how far the shim got.
  'play-fetch': {
    type: 'play',
    call: { callNo: 15, kind: CallKind.CLOCK_GETTIME, flags: CallFlag.TENTATIVE | CallFlag.FETCH, errno: 0, result: 0n, arg: 1n, payload: Buffer.alloc(0) },
  },
  // The clock read, a lock the shim must play with the agent, and a read of 3 client bytes after its connection's key.
  records: {
    type: 'records',
    first: 15,
    records: [
      { kind: CallKind.CLOCK_GETTIME, flags: 0, errno: 0, result: 0n, arg: 1n, payload: clockPayload },
      { kind: CallKind.LOCK, flags: CallFlag.SYNC, errno: 0, result: 0n, arg: 0x10002n, payload: encodeLockPosition({ domain: 0x0123456789abcdefn, attempt: 3, grant: 7 }) },
      { kind: CallKind.RECV, flags: 0, errno: 0, result: 3n, arg: 16384n, payload: Buffer.concat([Buffer.from('0123456789abcdef', 'hex'), Buffer.from('abc')]) },
    ],
  },
  played: { type: 'played', consumed: 16, peeked: 17 },
};

describe('shim protocol', () => {
  for (const [name, msg] of Object.entries(examples)) {
    it(`encodes ${name} exactly as its golden bytes`, () => {
      const file = join(goldenDir, `${name}.bin`);
      const bytes = encodeMessage(msg);
      if (process.env.FTCP_UPDATE_GOLDEN === '1' || !existsSync(file)) {
        mkdirSync(goldenDir, { recursive: true });
        writeFileSync(file, bytes);
      }
      expect(bytes.equals(readFileSync(file))).to.equal(true, `${name} differs from ${file}`);
    });

    it(`decodes the golden bytes of ${name} back to the same message`, () => {
      expect(decodeMessage(readFileSync(join(goldenDir, `${name}.bin`)))).to.deep.equal(msg);
    });
  }

  it('refuses RECORDS without a record, cut short, with bytes after the records or a flag other than SYNC, and a PLAYED whose peek is not the next call', () => {
    const good = readFileSync(join(goldenDir, 'records.bin'));
    const broken: [string, (f: Buffer) => Buffer][] = [
      ['no record', (f) => (f.writeUInt32LE(0, 8 + 8), f)],
      ['a count past the records', (f) => (f.writeUInt32LE(4, 8 + 8), f)],
      ['bytes after the records', (f) => (f.writeUInt32LE(2, 8 + 8), f)],
      ['a LIVE record', (f) => (f.writeUInt16LE(CallFlag.LIVE, 8 + 16 + 2), f)],
      ['a reserved field set', (f) => (f.writeUInt32LE(1, 8 + 12), f)],
    ];
    for (const [what, breakIt] of broken) {
      expect(() => decodeMessage(breakIt(Buffer.from(good))), what).to.throw().that.satisfies((e: unknown) => isFtcpError(e));
    }
    const played = readFileSync(join(goldenDir, 'played.bin'));
    const skipping = Buffer.from(played);
    skipping.writeBigUInt64LE(18n, 8 + 8);
    expect(() => decodeMessage(skipping)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
    expect(() => encodeRecords(1, [])).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
    expect(() => encodeRecords(1, [Buffer.alloc(MAX_BATCH)])).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
  });

  it('decodes a DONE as decodeMessage does, its bytes a view of the frame, not a copy (the agent\'s bulk path)', () => {
    const frame = readFileSync(join(goldenDir, 'done-send-long.bin'));
    const call = doneOf(frame);
    expect(call).to.deep.equal((decodeMessage(frame) as Extract<NswMessage, { type: 'done' }>).call);
    expect(call.payload.buffer).to.equal(frame.buffer);
    expect(() => doneOf(readFileSync(join(goldenDir, 'play.bin')))).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });

  it('is encoded and decoded by the C header exactly as by the TypeScript codec', function () {
    this.timeout(30000);
    const tmp = tempDir('golden');
    try {
      const bin = compileC('golden_check', tmp.dir);
      const out = execFileSync(bin, [goldenDir], { encoding: 'utf8' });
      expect(out).to.contain('golden: all ok');
    } finally {
      tmp.remove();
    }
  });

  it('takes the record of a CALL frame from its bytes exactly as decoding and encoding it would (the agent\'s hot path)', () => {
    for (const name of ['call-clock', 'call-random', 'call-error']) {
      const frame = readFileSync(join(goldenDir, `${name}.bin`));
      const msg = decodeMessage(frame) as Extract<NswMessage, { type: 'call' }>;
      const { callNo, data } = callRecordOf(frame);
      expect(callNo).to.equal(msg.call.callNo);
      expect(data.equals(encodeCallData(msg.call))).to.equal(true, name);
    }
    const good = readFileSync(join(goldenDir, 'call-random.bin'));
    const broken: [string, (f: Buffer) => void, string][] = [
      ['flags set', (f) => f.writeUInt16LE(1, 8 + 10), ErrorCode.MALFORMED_FRAME],
      ['a payload length that disagrees', (f) => f.writeUInt32LE(5, 8 + 32), ErrorCode.MALFORMED_FRAME],
      ['call number 0', (f) => f.writeBigUInt64LE(0n, 8), ErrorCode.MALFORMED_FRAME],
      ['a call number past 2^53', (f) => f.writeBigUInt64LE(1n << 60n, 8), ErrorCode.MALFORMED_FRAME],
    ];
    for (const [what, spoil, code] of broken) {
      const f = Buffer.from(good);
      spoil(f);
      expect(() => callRecordOf(f), what).to.throw().with.property('code', code);
    }
    expect(() => callRecordOf(good.subarray(0, 20))).to.throw().with.property('code', ErrorCode.TRUNCATED_FRAME);
  });

  it('round-trips a call record through its stored form', () => {
    const data = { kind: CallKind.GETPID, flags: 0, errno: 0, result: 12345n, arg: 0n, payload: Buffer.alloc(0) };
    expect(decodeCallData(encodeCallData(data))).to.deep.equal(data);
  });

  const V = NSW_PROTOCOL_VERSION;
  const call = (bytes: number[]): Buffer => Buffer.from(bytes);
  const bad: [string, Buffer, string][] = [
    ['a frame shorter than its header', call([V, 2, 0]), ErrorCode.TRUNCATED_FRAME],
    ['an older protocol version (1, whose replicated reads and writes were cut at 4088 bytes)', call([1, 0x81, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.BAD_VERSION],
    ['non-zero header flags', call([V, 0x81, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.MALFORMED_FRAME],
    ['an unknown type', call([V, 0x55, 0, 0, 0, 0, 0, 0]), ErrorCode.UNKNOWN_TYPE],
    ['a body length past the largest frame', call([V, 0x02, 0, 0, 0xff, 0xff, 0xff, 0x7f]), ErrorCode.OVERSIZED_FRAME],
    ['a body shorter than its stated length', call([V, 0x81, 0, 0, 8, 0, 0, 0, 1]), ErrorCode.TRUNCATED_FRAME],
    ['trailing bytes after the body', call([V, 0x81, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]), ErrorCode.MALFORMED_FRAME],
    ['a call body cut short', call([V, 0x02, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0]), ErrorCode.TRUNCATED_FRAME],
    ['a HELLO with an empty name', call([V, 0x01, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]), ErrorCode.MALFORMED_FRAME],
    ['a HELLO with an unknown mode', call([V, 0x01, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 1, 0, 0x70]), ErrorCode.MALFORMED_FRAME],
  ];
  for (const [what, bytes, code] of bad) {
    it(`refuses ${what} with ${code}`, () => {
      let caught: unknown;
      try {
        decodeMessage(bytes);
      } catch (err) {
        caught = err;
      }
      expect(isFtcpError(caught, code), String(caught)).to.equal(true);
    });
  }

  it('refuses a call whose payload length disagrees with the body', () => {
    const frame = encodeMessage(examples['call-random']!);
    frame.writeUInt32LE(5, 8 + 32);
    expect(() => decodeMessage(frame)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });

  it('refuses call number zero', () => {
    const frame = encodeMessage(examples['call-random']!);
    frame.writeBigUInt64LE(0n, 8);
    expect(() => decodeMessage(frame)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });

  const rebuildFrame = (): Buffer => encodeMessage(examples.rebuild!);
  const badPromotion: [string, () => Buffer, string][] = [
    ['an ADOPT with a non-zero reserved field', () => {
      const f = encodeMessage(examples.adopt!);
      f.writeUInt32LE(1, 8 + 4);
      return f;
    }, ErrorCode.MALFORMED_FRAME],
    ['a REBUILD whose queue lengths disagree with its body', () => {
      const f = rebuildFrame();
      f.writeUInt32LE(9, 8 + 40);
      return f;
    }, ErrorCode.MALFORMED_FRAME],
    ['a REBUILD whose sack_ok is neither 0 nor 1', () => {
      const f = rebuildFrame();
      f.writeUInt8(2, 8 + 24);
      return f;
    }, ErrorCode.MALFORMED_FRAME],
    ['a REBUILD shorter than its fixed part', () => Buffer.from([NSW_PROTOCOL_VERSION, 0x83, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]), ErrorCode.TRUNCATED_FRAME],
    ['an ADOPTED whose step name length disagrees with its body', () => {
      const f = encodeMessage(examples['adopted-failed']!);
      f.writeUInt16LE(3, 8 + 22);
      return f;
    }, ErrorCode.MALFORMED_FRAME],
  ];
  for (const [what, make, code] of badPromotion) {
    it(`refuses ${what} with ${code}`, () => {
      expect(() => decodeMessage(make())).to.throw().with.property('code', code);
    });
  }

  const head = (type: number, len: number): Buffer => {
    const h = Buffer.from([NSW_PROTOCOL_VERSION, type, 0, 0, 0, 0, 0, 0]);
    h.writeUInt32LE(len, 4);
    return h;
  };

  it('lets only a REBUILD, a RESULT and a DONE exceed the largest frame, each up to its own limit', () => {
    expect(checkHeader(head(0x83, MAX_REBUILD_BODY))).to.equal(MAX_REBUILD_BODY);
    expect(() => checkHeader(head(0x83, MAX_REBUILD_BODY + 1))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    for (const type of [0x82, 0x07]) {
      expect(checkHeader(head(type, MAX_IO_BODY))).to.equal(MAX_IO_BODY);
      expect(() => checkHeader(head(type, MAX_IO_BODY + 1))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    }
    for (const type of [0x02, 0x04, 0x81]) {
      expect(() => checkHeader(head(type, MAX_FRAME - NSW_HEADER_SIZE + 1))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    }
    // The agent's splitter takes no large frame from a shim but a DONE, and says so at the header.
    const agentSide = (): FrameSplitter => new FrameSplitter({ maxBody: (type) => (type === 0x07 ? MAX_IO_BODY : MAX_FRAME - NSW_HEADER_SIZE) });
    expect(() => agentSide().push(head(0x83, 100_000))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    expect(() => agentSide().push(head(0x82, 100_000))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    expect(agentSide().push(head(0x07, 100_000))).to.deep.equal([]);
  });

  it('lets only the RESULT of a RECV and the DONE of a SEND carry more than MAX_PAYLOAD bytes, up to MAX_IO', () => {
    const long = (type: 'result' | 'done' | 'call' | 'play', kind: number, n: number): NswMessage =>
      ({ type, call: { callNo: 1, kind, flags: 0, errno: 0, result: BigInt(n), arg: BigInt(n), payload: Buffer.alloc(n) } }) as NswMessage;
    expect(decodeMessage(encodeMessage(long('result', CallKind.RECV, MAX_PAYLOAD + 1)))).to.have.property('type', 'result');
    expect(decodeMessage(encodeMessage(long('done', CallKind.SEND, MAX_PAYLOAD + 1)))).to.have.property('type', 'done');
    expect(encodeMessage(long('result', CallKind.RECV, MAX_IO)).length).to.equal(NSW_HEADER_SIZE + MAX_IO_BODY);
    for (const [type, kind] of [['result', CallKind.SEND], ['result', CallKind.GETRANDOM], ['done', CallKind.RECV], ['call', CallKind.RECV], ['play', CallKind.SEND]] as const) {
      expect(() => encodeMessage(long(type, kind, MAX_PAYLOAD + 1)), `${type} of kind ${kind}`).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
      // The same frame built by hand is refused: by its header for a type that never carries bytes, else by the decoder.
      const frame = encodeMessage(long(type, kind, MAX_PAYLOAD));
      const grown = Buffer.concat([frame, Buffer.alloc(1)]);
      grown.writeUInt32LE(frame.length - NSW_HEADER_SIZE + 1, 4);
      grown.writeUInt32LE(MAX_PAYLOAD + 1, NSW_HEADER_SIZE + 32);
      const code = type === 'call' || type === 'play' ? ErrorCode.OVERSIZED_FRAME : ErrorCode.MALFORMED_FRAME;
      expect(() => decodeMessage(grown), `${type} of kind ${kind}`).to.throw().with.property('code', code);
    }
    expect(() => encodeMessage(long('result', CallKind.RECV, MAX_IO + 1))).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });

  it('hashes sent bytes with 64-bit FNV-1a, as the C header does', () => {
    const reference = (bytes: Uint8Array): bigint => {
      let h = 0xcbf29ce484222325n;
      for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
      return h;
    };
    expect(sendHash(Buffer.alloc(0))).to.equal(0xcbf29ce484222325n);
    expect(sendHash(Buffer.from('a'))).to.equal(0xaf63dc4c8601ec8cn);
    expect(sendHash(Buffer.from('foobar'))).to.equal(0x85944171f73967e8n);
    for (const n of [1, 2, 3, 255, 256, 4097]) {
      const b = longBytes(n).map((x, i) => x ^ (i * 31));
      expect(sendHash(b)).to.equal(reference(b));
    }
  });

  it('carries a REBUILD of tens of megabytes through the splitter, in 64 KiB chunks, intact', () => {
    const inq = Buffer.alloc(20 * 1024 * 1024, 0x69);
    inq.writeUInt32LE(0xdeadbeef, inq.length - 4);
    const outq = Buffer.alloc(6 * 1024 * 1024, 0x6f);
    const frame = encodeMessage({ ...(examples.rebuild as Extract<NswMessage, { type: 'rebuild' }>), inq, outq });
    const splitter = new FrameSplitter();
    const out: Buffer[] = [];
    const started = Date.now();
    for (let i = 0; i < frame.length; i += 65536) out.push(...splitter.push(frame.subarray(i, i + 65536)));
    // One copy per frame, not one per chunk: 400 chunks of a 26 MB frame would copy gigabytes.
    expect(Date.now() - started).to.be.below(2000);
    expect(out).to.have.length(1);
    const msg = decodeMessage(out[0]!) as Extract<NswMessage, { type: 'rebuild' }>;
    expect(msg.inq.equals(inq)).to.equal(true);
    expect(msg.outq.equals(outq)).to.equal(true);
  });

  it('refuses to encode a REBUILD the shim could not rebuild (an IPv6 address, a queue over the limit)', () => {
    const r = examples.rebuild as Extract<NswMessage, { type: 'rebuild' }>;
    expect(() => encodeMessage({ ...r, state: { ...r.state, peerAddress: '2001:db8::1' } })).to.throw().with.property('code', NswErrorCode.REBUILD_FAILED);
    expect(() => encodeMessage({ ...r, inq: Buffer.alloc(MAX_REBUILD_QUEUE + 1) })).to.throw().with.property('code', NswErrorCode.REBUILD_FAILED);
  });

  it('refuses to encode a payload larger than the limit', () => {
    const big = { kind: CallKind.GETRANDOM, flags: 0, errno: 0, result: 0n, arg: 0n, payload: Buffer.alloc(MAX_PAYLOAD + 1) };
    expect(() => encodeCallData(big)).to.throw().with.property('code', ErrorCode.MALFORMED_FRAME);
  });

  it('splits a byte stream into frames whatever the chunk boundaries', () => {
    const frames = Object.values(examples).map(encodeMessage);
    const all = Buffer.concat(frames);
    // 50 and 97: several frames cut from one chunk, then a header split across the next.
    for (const step of [1, 3, 7, 50, 97, all.length]) {
      const splitter = new FrameSplitter();
      const out: Buffer[] = [];
      for (let i = 0; i < all.length; i += step) out.push(...splitter.push(all.subarray(i, i + step)));
      expect(out.map((b) => b.toString('hex'))).to.deep.equal(frames.map((b) => b.toString('hex')));
      expect(splitter.buffered).to.equal(0);
    }
  });

  it('refuses garbage as soon as the splitter has a header, before any body arrives', () => {
    const splitter = new FrameSplitter();
    expect(() => splitter.push(Buffer.from('GET / HTTP/1.1\r\n'))).to.throw().with.property('code', ErrorCode.BAD_VERSION);
  });
});
