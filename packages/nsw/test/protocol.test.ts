import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, isFtcpError } from '../src/errors.js';
import {
  CallFlag,
  CallKind,
  FrameSplitter,
  MAX_PAYLOAD,
  ShimMode,
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
