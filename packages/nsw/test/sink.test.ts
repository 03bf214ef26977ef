import { expect } from 'chai';
import { ErrorCode, isFtcpError } from '../src/errors.js';
import { MemoryRecordSink } from '../src/sink.js';

describe('MemoryRecordSink', () => {
  it('gives back appended records in call order', async () => {
    const sink = new MemoryRecordSink();
    await sink.append('p', 1, Buffer.from('a'));
    await sink.append('p', 2, Buffer.from('b'));
    expect((await sink.read('p', 2)).toString()).to.equal('b');
    expect(sink.records('p').map(String)).to.deep.equal(['a', 'b']);
  });

  it('refuses a call number that is not the next one of its stream', async () => {
    const sink = new MemoryRecordSink();
    await sink.append('p', 1, Buffer.from('a'));
    const err = await sink.append('p', 3, Buffer.from('c')).catch((e: unknown) => e);
    expect(isFtcpError(err, ErrorCode.CONFLICT)).to.equal(true);
  });

  it('makes a reader wait for a record that is not there yet', async () => {
    const sink = new MemoryRecordSink();
    const pending = sink.read('p', 1);
    await sink.append('p', 1, Buffer.from('late'));
    expect((await pending).toString()).to.equal('late');
  });

  it('neither acknowledges nor serves held records until released', async () => {
    const sink = new MemoryRecordSink();
    sink.hold();
    let stable = false;
    const appended = sink.append('p', 1, Buffer.from('x')).then(() => (stable = true));
    const read = sink.read('p', 1);
    await new Promise((r) => setTimeout(r, 10));
    expect(stable).to.equal(false);
    expect(sink.records('p')).to.deep.equal([]);
    sink.release();
    await appended;
    expect((await read).toString()).to.equal('x');
  });

  it('rejects a waiting read with FTCP_ERR_CLOSED when it is aborted', async () => {
    const sink = new MemoryRecordSink();
    const ac = new AbortController();
    const pending = sink.read('p', 1, ac.signal).catch((e: unknown) => e);
    ac.abort();
    expect(isFtcpError(await pending, ErrorCode.CLOSED)).to.equal(true);
  });
});
