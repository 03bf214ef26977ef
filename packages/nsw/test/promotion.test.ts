/**
 * Promotion of replicated connections, end to end (DESIGN "Failover, in
 * order", step 4): a real client connection whose server side vanished, a
 * replica under the shim that plays the primary's records back and goes
 * live, and the connection rebuilt with TCP_REPAIR at the primary's
 * descriptor number. Needs root (TCP_REPAIR, a network namespace); skipped
 * otherwise, except the failure that needs neither.
 */
import { expect } from 'chai';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { NswAgent, shimPath, type RebuildReport, type RebuildSource, type ReplicatedConnection, type TcpRebuildState } from '../src/index.js';
import { CallKind, callKindName, decodeCallData, encodeCallData, sendHash, type CallData } from '../src/protocol.js';
import { MemoryRecordSink } from '../src/sink.js';
import { compileC, run, tempDir, until, type RunResult } from './helpers.js';

const REQUEST = Buffer.from('GET /first\n');
/** The descriptor number the primary's accept returned: not the lowest free one on the replica, on purpose. */
const PRIMARY_FD = 9;
/** Where adopt_server's "copy" variant serves the connection. */
const COPY_FD = 5000;
/** The replica's listening socket (after stdin, stdout, stderr). */
const LISTEN_FD = 3;
/** What adopt_server asks of its request read (sizeof req). */
const REQUEST_ASK = 4096;
/** The most the primary's kernel took of one write of the reply (a non-blocking socket takes what fits). */
const WRITE_TOOK = 1 << 20;
const EPOLLIN = 1;

/** Byte i of the stream named by tag, as test/c/adopt_client.c and adopt_server.c make it. */
function pattern(tag: string, from: number, n: number): Buffer {
  const t = tag.charCodeAt(0);
  const out = Buffer.alloc(n);
  for (let k = 0; k < n; k++) {
    const i = from + k;
    out[k] = (t * 31 + i * 7 + Math.floor(i / 256)) & 0xff;
  }
  return out;
}

/** A Linux sockaddr_in as the shim records it: family in host order, port and address in network order. */
function sockaddrIn(address: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(2, 0);
  b.writeUInt16BE(port, 2);
  Buffer.from(address.split('.').map(Number)).copy(b, 4);
  return b;
}

const rec = (kind: number, arg: bigint, result: bigint, payload: Buffer = Buffer.alloc(0)): CallData => ({ kind, flags: 0, errno: 0, result, arg, payload });

/**
 * The primary's records of adopt_server up to its failure: accept, the epoll
 * wait that saw the request, the read of it, and its reply: one write of the
 * rest each time, of which the kernel took at most WRITE_TOOK bytes, each
 * with the hash of the bytes it took.
 */
function primaryRecords(peer: { address: string; port: number }, w: number, servedOn = PRIMARY_FD): CallData[] {
  const ev = Buffer.alloc(8);
  ev.writeUInt32LE(EPOLLIN, 0);
  ev.writeUInt32LE(servedOn, 4);
  const sockaddr = sockaddrIn(peer.address, peer.port);
  // Reads and writes name their connection: the hash of the peer's sockaddr.
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(sendHash(sockaddr));
  const out: CallData[] = [
    rec(CallKind.ACCEPT, BigInt(LISTEN_FD), BigInt(PRIMARY_FD), sockaddr),
    rec(CallKind.EPOLL_WAIT, 8n, 1n, ev),
    rec(CallKind.RECV, BigInt(REQUEST_ASK), BigInt(REQUEST.length), key),
  ];
  const reply = pattern('w', 0, w);
  for (let at = 0; at < w; at += WRITE_TOOK) {
    const chunk = reply.subarray(at, Math.min(w, at + WRITE_TOOK));
    const hash = Buffer.alloc(8);
    hash.writeBigUInt64LE(sendHash(chunk));
    out.push(rec(CallKind.SEND, BigInt(w - at), BigInt(chunk.length), Buffer.concat([key, hash])));
  }
  return out;
}

/** Parses adopt_client's "state ..." line into the rebuild state (TSvals moved ahead, as a backup does). */
function parseState(line: string): { state: TcpRebuildState; unread: number } {
  const f = Object.fromEntries(line.trim().split(' ').slice(1).map((kv) => kv.split('=') as [string, string]));
  const [localAddress, localPort] = f.local!.split(':');
  const [peerAddress, peerPort] = f.peer!.split(':');
  const n = (k: string): number => Number(f[k]);
  return {
    state: {
      localAddress: localAddress!,
      localPort: Number(localPort),
      peerAddress: peerAddress!,
      peerPort: Number(peerPort),
      sndUna: n('snd_una'),
      rcvNxt: n('rcv_nxt'),
      mss: n('mss'),
      sndWscale: n('snd_wscale'),
      rcvWscale: n('rcv_wscale'),
      sackOk: n('sack') === 1,
      timestamps: n('ts') === 1,
      // Ahead of every TSval the client saw (PAWS, RFC 7323 5), as the CLI's planRebuild does.
      tsVal: (n('tsval') + 1000) >>> 0,
      peerWindow: n('peer_window'),
      ourWindow: n('our_window'),
    },
    unread: n('unread'),
  };
}

/** Starts a program in the namespace; resolves with its first stdout line, or rejects after ms. */
function firstLine(child: ChildProcess, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no line within ${ms} ms; stderr: ${err}`)), ms);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before a line; stderr: ${err}`));
    });
  });
}

/** Collects a child's output until it exits, killing it after ms. */
function finish(child: ChildProcess, ms: number): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid ?? -1, code, signal, stdout, stderr });
    });
  });
}

/**
 * A playback agent fed `records`, with the client's stable bytes. `live` is
 * the same store: after a takeover the new reign's records continue the
 * stream in the same buffer.
 */
async function replicaAgent(
  socketPath: string,
  records: CallData[],
  client: Buffer,
  rebuild: RebuildSource | undefined,
): Promise<{ agent: NswAgent; live: MemoryRecordSink; reports: RebuildReport[] }> {
  const source = new MemoryRecordSink();
  for (const [i, r] of records.entries()) await source.append('srv', i + 1, encodeCallData(r));
  const agent = new NswAgent({
    socketPath,
    mode: 'playback',
    source,
    instream: { readInstream: async (_peer, offset, length) => client.subarray(offset, offset + length) },
    ...(rebuild ? { rebuild } : {}),
    adoptWaitMs: 5000,
  });
  const reports: RebuildReport[] = [];
  agent.on('rebuilt', (r: RebuildReport) => reports.push(r));
  await agent.listen();
  return { agent, live: source, reports };
}

/** The replica's environment for `env` inside `ip netns exec` (the shim must not load into `ip` itself). */
function shimArgs(socketPath: string, port: number): string[] {
  return [`LD_PRELOAD=${shimPath()}`, 'FTCP_NSW_MODE=playback', `FTCP_NSW_SOCKET=${socketPath}`, 'FTCP_NSW_NAME=srv', `FTCP_NSW_PORT=${port}`];
}

describe('a promoted replica\'s replicated connection', function () {
  this.timeout(90_000);
  const ns = `ftcp-nsw-adopt-${process.pid}`;
  const root = process.getuid?.() === 0;
  let tmp: ReturnType<typeof tempDir>;
  let client: string;
  let server: string;
  let nextPort = 20000 + (process.pid % 20000);

  before(() => {
    tmp = tempDir('adopt');
    server = compileC('adopt_server', tmp.dir);
    if (!root) return;
    client = compileC('adopt_client', tmp.dir);
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  });
  after(() => {
    if (root) spawnSync('ip', ['netns', 'del', ns]);
    tmp?.remove();
  });

  // Sizes: reply W (its last O bytes never reached the client), I client bytes the replica had not read.
  const sizes = [
    { what: 'a few kilobytes each way', w: 3000, o: 1000, i: 2000, copy: false },
    { what: 'a megabyte unread and 300 kB unacknowledged', w: 400_000, o: 300_000, i: 1_000_000, copy: false },
    // Past tcp_rmem[2] (6 MiB by default, 32 MiB on the test machine): the rebuild must grow the receive buffer itself.
    { what: '40 MB unread and 8 MB unacknowledged', w: 9_000_000, o: 8_000_000, i: 40_000_000, copy: false },
    // The server works on a copy at 5000 (F_DUPFD_CLOEXEC) and keeps the accepted descriptor open: both get the socket.
    { what: 'served through a copy at descriptor 5000', w: 3000, o: 1000, i: 2000, copy: true },
  ];
  for (const { what, w, o, i, copy } of sizes) {
    it(`is rebuilt at the primary's descriptor number so the client sees every byte in order, both ways (${what})`, async function () {
      if (!root) this.skip();
      const port = nextPort++;
      const fixture = spawn('ip', ['netns', 'exec', ns, client, String(port), String(w), String(o), String(i)], { stdio: ['ignore', 'pipe', 'pipe'] });
      const clientDone = finish(fixture, 60_000);
      const { state, unread } = parseState(await firstLine(fixture, 20_000));
      expect(unread).to.equal(i);
      expect(state.localPort).to.equal(port);

      const clientBytes = Buffer.concat([REQUEST, pattern('i', 0, i)]);
      const servedOn = copy ? COPY_FD : PRIMARY_FD;
      const records = primaryRecords({ address: state.peerAddress, port: state.peerPort }, w, servedOn);
      const seen: ReplicatedConnection[] = [];
      const rebuild: RebuildSource = {
        plan: async (conn) => {
          seen.push(conn);
          // The stable instream past what the replica read, and what it sent that the client lacks.
          return { state, inq: clientBytes.subarray(conn.instreamOffset), outq: conn.unacked };
        },
      };
      const { agent, live, reports } = await replicaAgent(join(tmp.dir, `r${port}.sock`), records, clientBytes, rebuild);
      try {
        const replica = spawn('ip', ['netns', 'exec', ns, 'env', ...shimArgs(agent.options.socketPath, port), server, String(port), String(w), String(i), ...(copy ? ['copy'] : [])], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const replicaDone = finish(replica, 60_000);
        // Every record played, and the reply's bytes (each write's DONE) in the send buffer.
        await until(() => agent.counters.played === records.length && agent.replicatedConnections()[0]?.sentOffset === w, 20_000);
        // The buffer's client-ack records: the client acknowledged all but the last O bytes of the reply.
        const [conn] = agent.replicatedConnections();
        agent.clientAcked(conn!.key, w - o);
        agent.goLive(new Map([['srv', records.length]]), live);

        const r = await replicaDone;
        const c = await clientDone;
        expect(r.stderr, r.stderr).to.equal('');
        expect(r.stdout.split('\n')).to.deep.equal([
          `accepted fd ${PRIMARY_FD} from ${state.peerAddress}:${state.peerPort}`,
          'request: GET /first',
          'replayed',
          `live: fd ${servedOn} nonblock 1 cloexec 1`,
          `unread client bytes ok: ${i} bytes`,
          'client bytes after the takeover ok: 700 bytes',
          'done',
          '',
        ]);
        expect(r.code).to.equal(0);
        expect(c.stderr, c.stderr).to.equal('');
        expect(c.stdout).to.contain(`client ok: ${o + 500} bytes after the takeover`);
        expect(c.code).to.equal(0);

        expect(reports).to.deep.equal([{ stream: 'srv', fd: PRIMARY_FD, key: conn!.key, peer: { family: 'ipv4', address: state.peerAddress, port: state.peerPort }, ok: true, step: 0 }]);
        expect(agent.counters.rebuilt).to.equal(1);
        // The plan saw the replica's final positions: the request read, the reply sent, all but O bytes acknowledged.
        expect(seen).to.have.length(1);
        expect(seen[0]!.instreamOffset).to.equal(REQUEST.length);
        expect(seen[0]!.sentOffset).to.equal(w);
        expect(seen[0]!.unacked.equals(pattern('w', w - o, o))).to.equal(true);
        // After going live the connection is a replicated one in record mode: its calls went to the new reign's sink.
        const kinds = new Set(live.records('srv').slice(records.length).map((b) => callKindName(decodeCallData(b).kind)));
        expect([...kinds]).to.include.members(['epoll_wait', 'recv', 'send']);
      } finally {
        await agent.close();
        fixture.kill('SIGKILL');
      }
    });
  }

  const failures = [
    { what: 'there is no RebuildSource', needsRoot: false, rebuild: undefined, error: /^refused by the agent: FTCP_ERR_NOT_AVAILABLE: / },
    {
      what: 'the plan names an address this host does not have',
      needsRoot: true,
      rebuild: 'bad-address' as const,
      error: /^failed at bind: EADDRNOTAVAIL \(errno 99\)$/,
    },
  ];
  for (const f of failures) {
    it(`says loudly that the rebuild failed when ${f.what}, and the server reads EOF on that descriptor instead of crashing`, async function () {
      if (f.needsRoot && !root) this.skip();
      const port = nextPort++;
      const peer = { address: '127.0.0.1', port: 40000 };
      const records = primaryRecords(peer, 100);
      const rebuild: RebuildSource | undefined =
        f.rebuild === 'bad-address'
          ? {
              plan: async (conn) => ({
                state: {
                  localAddress: '192.0.2.1', localPort: port, peerAddress: conn.peer.address, peerPort: conn.peer.port,
                  sndUna: 1, rcvNxt: 1, mss: 1460, sndWscale: 7, rcvWscale: 7, sackOk: true, timestamps: true, tsVal: 1, peerWindow: 65535, ourWindow: 65535,
                },
                inq: Buffer.alloc(0),
                outq: conn.unacked,
              }),
            }
          : undefined;
      const { agent, live, reports } = await replicaAgent(join(tmp.dir, `f${port}.sock`), records, REQUEST, rebuild);
      try {
        const env = Object.fromEntries(shimArgs(agent.options.socketPath, port).map((kv) => kv.split('=', 2) as [string, string]));
        const replaying = root
          ? run('ip', ['netns', 'exec', ns, 'env', ...shimArgs(agent.options.socketPath, port), server, String(port), '100', '10'], {}, 30_000)
          : run(server, [String(port), '100', '10'], env, 30_000);
        await until(() => agent.counters.played === records.length, 20_000);
        agent.goLive(new Map([['srv', records.length]]), live);
        const r = await replaying;
        expect(r.code, r.stdout + r.stderr).to.equal(0);
        expect(r.stdout.split('\n').slice(-4)).to.deep.equal(['replayed', `live: fd ${PRIMARY_FD} nonblock 1 cloexec 1`, 'eof', '']);
        // One line, naming the descriptor and the step.
        const lines = r.stderr.trim().split('\n');
        expect(lines).to.have.length(1);
        expect(lines[0]).to.match(new RegExp(`^ftcp-nsw: replicated descriptor ${PRIMARY_FD} was not rebuilt, failed at ${f.rebuild ? 'bind \\(errno 99\\)' : 'agent: FTCP_ERR_NOT_AVAILABLE'}`));
        expect(reports).to.have.length(1);
        expect(reports[0]).to.include({ stream: 'srv', fd: PRIMARY_FD, ok: false });
        expect(reports[0]!.error).to.match(f.error);
        expect(agent.counters.rebuildFailed).to.equal(1);
        expect(agent.counters.rebuilt).to.equal(0);
      } finally {
        await agent.close();
      }
    });
  }
});
