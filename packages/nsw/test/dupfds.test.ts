/**
 * Copies of tracked descriptors (dup, dup2, dup3, F_DUPFD) are what their
 * originals are, and descriptor numbers past 4096 are tracked too.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { NswAgent, shimPath, type PeerAddress } from '../src/index.js';
import { CallKind, callKindName, decodeCallData } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { compileC, quiet, run, shimEnv, tempDir, until } from './helpers.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('copied and high descriptors under the shim', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let prog: string;
  let sink: MemoryRecordSink;
  let primary: NswAgent;

  before(() => {
    tmp = tempDir('dupfds');
    prog = compileC('dupfds', tmp.dir);
  });
  after(() => tmp.remove());
  beforeEach(async () => {
    sink = new MemoryRecordSink();
    primary = new NswAgent({ socketPath: join(tmp.dir, 'p.sock'), mode: 'record', sink });
    await primary.listen();
  });
  afterEach(() => primary.close());

  async function replica(instream: Buffer): Promise<{ agent: NswAgent; peers: PeerAddress[] }> {
    const peers: PeerAddress[] = [];
    const agent = new NswAgent({
      socketPath: join(tmp.dir, 'r.sock'), mode: 'playback', source: sink,
      instream: { readInstream: async (peer, offset, length) => (peers.push(peer), instream.subarray(offset, offset + length)) },
    });
    await agent.listen();
    return { agent, peers };
  }

  it('replays reads of /dev/urandom through copies at 5000 and above (F_DUPFD, dup2, dup3, dup)', async () => {
    const recorded = await run(prog, ['random'], shimEnv(shimPath(), 'record', primary.options.socketPath));
    expect(recorded.stderr).to.equal('');
    expect(recorded.code).to.equal(0);
    expect(recorded.stdout).to.match(/^F_DUPFD \(fd 5000\): 8 bytes( [0-9a-f]{2}){8}\ndup2 \(fd 6000\)/);
    await quiet(primary);
    expect(sink.records('srv').map((r) => callKindName(decodeCallData(r).kind))).to.deep.equal([...Array(4).fill('read_random'), 'end']);
    const { agent } = await replica(Buffer.alloc(0));
    try {
      const replayed = await run(prog, ['random'], shimEnv(shimPath(), 'playback', agent.options.socketPath));
      expect(replayed.stderr).to.equal('');
      expect(replayed.stdout).to.equal(recorded.stdout);
      expect(agent.canTakeOver).to.equal(true);
    } finally {
      await agent.close();
    }
  });

  it('treats a copy of a replicated connection at 5000 as that connection: read recorded and replayed, output committed and kept', async () => {
    const port = await freePort();
    const child = spawn(prog, ['conn', String(port)], {
      env: { ...process.env, ...shimEnv(shimPath(), 'record', primary.options.socketPath), FTCP_NSW_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until(() => stdout.includes('listening'));
    const sock = connect(port, '127.0.0.1');
    sock.write('hello\n');
    let reply = '';
    sock.setEncoding('utf8').on('data', (d: string) => (reply += d));
    await new Promise<void>((resolve) => sock.on('end', () => resolve()));
    expect(await exited).to.equal(0);
    expect(stdout).to.match(/connection fd 5000, copy \d+: hello at \d+\n$/);
    expect(reply).to.match(/^hello at \d+\nbye\n$/);
    await quiet(primary);
    const kinds = sink.records('srv').map((r) => decodeCallData(r).kind);
    expect(kinds.filter((k) => k === CallKind.RECV)).to.have.length(1);
    expect(kinds.filter((k) => k === CallKind.SEND)).to.have.length(2);

    const { agent } = await replica(Buffer.from('hello\n'));
    try {
      const replayed = await run(prog, ['conn', String(port)], { ...shimEnv(shimPath(), 'playback', agent.options.socketPath), FTCP_NSW_PORT: String(port) });
      await until(() => agent.counters.open === 0);
      expect(replayed.stderr).to.equal('');
      expect(replayed.stdout).to.equal(stdout);
      const [conn] = agent.replicatedConnections();
      expect(conn!.unacked.toString()).to.equal(reply);
      expect(agent.canTakeOver).to.equal(true);
    } finally {
      await agent.close();
    }
  });
});
