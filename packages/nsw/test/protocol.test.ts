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
  MAX_PAYLOAD,
  MAX_REBUILD_BODY,
  NSW_HEADER_SIZE,
  ShimMode,
  checkHeader,
  decodeCallData,
  decodeMessage,
  encodeCallData,
  encodeMessage,
  type NswMessage,
} from '../src/protocol.js';
import { compileC, goldenDir, tempDir } from './helpers.js';

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

  it('round-trips a call record through its stored form', () => {
    const data = { kind: CallKind.GETPID, flags: 0, errno: 0, result: 12345n, arg: 0n, payload: Buffer.alloc(0) };
    expect(decodeCallData(encodeCallData(data))).to.deep.equal(data);
  });

  const call = (bytes: number[]): Buffer => Buffer.from(bytes);
  const bad: [string, Buffer, string][] = [
    ['a frame shorter than its header', call([1, 2, 0]), ErrorCode.TRUNCATED_FRAME],
    ['another protocol version', call([2, 0x81, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.BAD_VERSION],
    ['non-zero header flags', call([1, 0x81, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), ErrorCode.MALFORMED_FRAME],
    ['an unknown type', call([1, 0x55, 0, 0, 0, 0, 0, 0]), ErrorCode.UNKNOWN_TYPE],
    ['a body length past the largest frame', call([1, 0x02, 0, 0, 0xff, 0xff, 0xff, 0x7f]), ErrorCode.OVERSIZED_FRAME],
    ['a body shorter than its stated length', call([1, 0x81, 0, 0, 8, 0, 0, 0, 1]), ErrorCode.TRUNCATED_FRAME],
    ['trailing bytes after the body', call([1, 0x81, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]), ErrorCode.MALFORMED_FRAME],
    ['a call body cut short', call([1, 0x02, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0]), ErrorCode.TRUNCATED_FRAME],
    ['a HELLO with an empty name', call([1, 0x01, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]), ErrorCode.MALFORMED_FRAME],
    ['a HELLO with an unknown mode', call([1, 0x01, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 1, 0, 0x70]), ErrorCode.MALFORMED_FRAME],
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
    ['a REBUILD shorter than its fixed part', () => Buffer.from([1, 0x83, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]), ErrorCode.TRUNCATED_FRAME],
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

  it('lets only a REBUILD exceed the largest frame, and only up to two full queues', () => {
    const head = (type: number, len: number): Buffer => {
      const h = Buffer.from([1, type, 0, 0, 0, 0, 0, 0]);
      h.writeUInt32LE(len, 4);
      return h;
    };
    expect(checkHeader(head(0x83, MAX_REBUILD_BODY))).to.equal(MAX_REBUILD_BODY);
    expect(() => checkHeader(head(0x83, MAX_REBUILD_BODY + 1))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    expect(() => checkHeader(head(0x82, MAX_FRAME - NSW_HEADER_SIZE + 1))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
    // The agent's splitter takes no large frame from a shim, REBUILD or not, and says so at the header.
    const agentSide = new FrameSplitter({ maxBody: MAX_FRAME - NSW_HEADER_SIZE });
    expect(() => agentSide.push(head(0x83, 100_000))).to.throw().with.property('code', ErrorCode.OVERSIZED_FRAME);
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
    for (const step of [1, 3, 7, all.length]) {
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
