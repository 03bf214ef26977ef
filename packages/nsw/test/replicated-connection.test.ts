import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { NswAgent, SHIM_EXIT_DIVERGED, shimPath, type PeerAddress } from '../src/index.js';
import { CallKind, callKindName, decodeCallData, sendHash } from '../src/protocol.js';
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

describe('a replicated connection', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let echo: string;
  let sink: MemoryRecordSink;
  let agent: NswAgent;

  before(() => {
    tmp = tempDir('commit');
    echo = compileC('echo', tmp.dir);
  });
  after(() => tmp.remove());
  beforeEach(async () => {
    sink = new MemoryRecordSink();
    agent = new NswAgent({ socketPath: join(tmp.dir, 'agent.sock'), mode: 'record', sink });
    await agent.listen();
  });
  afterEach(() => agent.close());

  /** Starts the echo server under the shim, connects and sends a line; resolves with the socket and a reply promise. */
  async function session(line: string, extra: string[] = []): Promise<{ reply: Promise<string>; exited: Promise<number | null>; port: number; clientPort: Promise<number> }> {
    const port = await freePort();
    const child = spawn(echo, [String(port), ...extra], {
      env: { ...process.env, ...shimEnv(shimPath(), 'record', agent.options.socketPath), FTCP_NSW_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const sock = connect(port, '127.0.0.1');
    const clientPort = new Promise<number>((resolve) => sock.on('connect', () => resolve(sock.localPort!)));
    sock.write(`${line}\n`);
    let data = '';
    sock.setEncoding('utf8').on('data', (d: string) => (data += d));
    const reply = new Promise<string>((resolve) => sock.on('end', () => resolve(data)));
    return { reply, exited, port, clientPort };
  }

  /** Plays a server (echo unless `bin`) back against the records in `sink`, with `client` as the client's bytes. */
  async function replay(port: number, client: string | Buffer, extra: string[] = [], bin = echo): Promise<{ agent: NswAgent; code: number | null; stdout: string; stderr: string; peers: PeerAddress[] }> {
    const peers: PeerAddress[] = [];
    const replica = new NswAgent({
      socketPath: join(tmp.dir, 'replica.sock'),
      mode: 'playback',
      source: sink,
      instream: {
        readInstream: async (peer, offset, length) => {
          peers.push(peer);
          return Buffer.from(client).subarray(offset, offset + length);
        },
      },
    });
    replica.on('divergence', () => {});
    await replica.listen();
    const r = await run(bin, [String(port), ...extra], { ...shimEnv(shimPath(), 'playback', replica.options.socketPath), FTCP_NSW_PORT: String(port) });
    // Every frame the replica sent (its last DONE included) is handled once its connections closed.
    await until(() => replica.counters.open === 0);
    await replica.close();
    return { agent: replica, code: r.code, stdout: r.stdout, stderr: r.stderr, peers };
  }

  it('does not send a reply before the records of its thread are stable, and sends it once they are', async () => {
    sink.hold();
    const { reply, exited } = await session('hello');
    let answered = false;
    void reply.then(() => (answered = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).to.equal(false);
    expect(agent.counters.unstable).to.be.greaterThan(0);
    sink.release();
    expect(await reply).to.match(/^hello at \d+\n$/);
    expect(await exited).to.equal(0);
  });

  for (const how of ['write', 'sendfile']) {
    it(`is played back in a replica (reply by ${how}): the primary's descriptor and peer, the client's bytes, the reply kept unsent`, async () => {
      const extra = how === 'sendfile' ? ['sendfile'] : [];
      const { reply, exited, port, clientPort } = await session('hello', extra);
      const text = await reply;
      expect(await exited).to.equal(0);
      const replica = await replay(port, 'hello\n', extra);
      expect(replica.stderr).to.equal('');
      expect(replica.code).to.equal(0);
      expect(replica.peers[0]).to.deep.equal({ family: 'ipv4', address: '127.0.0.1', port: await clientPort });
      // The placeholder descriptor has the primary's number and addresses.
      expect(replica.stdout).to.equal(`listening\nconnection 4: 127.0.0.1:${port} <- 127.0.0.1:${await clientPort}\n`);
      const [conn] = replica.agent.replicatedConnections();
      expect(conn!.instreamOffset).to.equal('hello\n'.length);
      expect(conn!.unacked.toString()).to.equal(text);
      replica.agent.clientAcked(conn!.key, 6);
      expect(replica.agent.replicatedConnections()[0]!.unacked.toString()).to.equal(text.slice(6));
      expect(replica.agent.canTakeOver).to.equal(true);
    });
  }

  it('stops a replica whose reply differs from the primary\'s (hash of sent bytes) and refuses to take over', async () => {
    const { reply, exited, port } = await session('hello');
    await reply;
    expect(await exited).to.equal(0);
    const replica = await replay(port, 'jello\n');
    expect(replica.code).to.equal(SHIM_EXIT_DIVERGED);
    expect(replica.stderr).to.contain('FTCP_ERR_DIVERGENCE').and.to.contain('hash');
    expect(replica.agent.canTakeOver).to.equal(false);
  });

  it('moves a 200 kB read and a 300 kB write in one call each, in record mode and in playback, as the kernel did', async () => {
    const bulk = compileC('bulk', tmp.dir);
    const [IN, OUT] = [200_000, 300_000];
    const request = Buffer.alloc(IN);
    for (let i = 0; i < IN; i++) request[i] = (i * 7 + (i >> 8)) & 0xff;
    const port = await freePort();
    const child = spawn(bulk, [String(port), String(IN), String(OUT)], {
      env: { ...process.env, ...shimEnv(shimPath(), 'record', agent.options.socketPath), FTCP_NSW_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const sock = connect(port, '127.0.0.1');
    sock.write(request);
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    await new Promise<void>((resolve) => sock.on('end', () => resolve()));
    const reply = Buffer.concat(chunks);
    expect(await exited).to.equal(0);
    expect(stdout).to.contain(`read ${IN} of ${IN} in one call`).and.to.contain(`wrote ${OUT} of ${OUT} in one call`);
    expect(reply.length).to.equal(OUT);
    await quiet(agent);
    // The records hold lengths, the connection's key and a hash, never the bytes: a record stays small.
    const recs = sink.records('srv').map(decodeCallData);
    const recv = recs.find((r) => r.kind === CallKind.RECV)!;
    expect([recv.arg, recv.result, recv.payload.length]).to.deep.equal([BigInt(IN), BigInt(IN), 8]);
    const send = recs.find((r) => r.kind === CallKind.SEND)!;
    expect([send.arg, send.result]).to.deep.equal([BigInt(OUT), BigInt(OUT)]);
    expect(send.payload.readBigUInt64LE(0)).to.equal(recv.payload.readBigUInt64LE(0));
    expect(send.payload.readBigUInt64LE(8)).to.equal(sendHash(reply));

    const replica = await replay(port, request, [String(IN), String(OUT)], bulk);
    expect(replica.stderr).to.equal('');
    expect(replica.code).to.equal(0);
    expect(replica.stdout).to.equal(stdout);
    const [conn] = replica.agent.replicatedConnections();
    expect(conn!.instreamOffset).to.equal(IN);
    expect(conn!.unacked.equals(reply)).to.equal(true);
    expect(replica.agent.canTakeOver).to.equal(true);
  });

  it('stops a replica whose long write differs from the primary\'s in one byte', async () => {
    const bulk = compileC('bulk', tmp.dir);
    const port = await freePort();
    const child = spawn(bulk, [String(port), '100000', '150000'], {
      env: { ...process.env, ...shimEnv(shimPath(), 'record', agent.options.socketPath), FTCP_NSW_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const request = Buffer.alloc(100_000, 1);
    const sock = connect(port, '127.0.0.1');
    sock.write(request);
    sock.resume();
    await new Promise<void>((resolve) => sock.on('end', () => resolve()));
    expect(await exited).to.equal(0);
    // Another last byte changes the request's sum, so every byte of the reply.
    request[request.length - 1] = 2;
    const replica = await replay(port, request, ['100000', '150000'], bulk);
    expect(replica.code).to.equal(SHIM_EXIT_DIVERGED);
    expect(replica.stderr).to.contain('FTCP_ERR_DIVERGENCE').and.to.contain('send of 150000 bytes');
    expect(replica.agent.canTakeOver).to.equal(false);
  });

  it('records the accept, the read lengths and a hash of the bytes sent', async () => {
    const { reply, exited } = await session('abc');
    const text = await reply;
    expect(await exited).to.equal(0);
    await quiet(agent);
    const recs = sink.records('srv').map(decodeCallData);
    expect(recs.map((r) => callKindName(r.kind))).to.deep.equal(['accept', 'sockname', 'sockname', 'recv', 'time', 'send', 'end']);
    const accept = recs[0]!;
    expect(accept.arg).to.equal(3n);
    expect(accept.result).to.equal(4n);
    expect(accept.payload.length).to.equal(16);
    expect(recs[3]!.result).to.equal(4n); // "abc\n" in one read
    const send = recs.find((r) => r.kind === CallKind.SEND)!;
    expect(send.result).to.equal(BigInt(text.length));
    expect(send.payload.readBigUInt64LE(0)).to.equal(sendHash(accept.payload));
    expect(send.payload.readBigUInt64LE(8)).to.equal(sendHash(Buffer.from(text)));
  });
});
