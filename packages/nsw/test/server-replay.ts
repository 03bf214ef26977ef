/**
 * Record a real, unmodified server under the shim while real clients talk
 * to it over loopback, then play the same log back in a replica and see
 * whether it went through the same states: no divergence, and for every
 * connection exactly the bytes the client got from the primary in the
 * replica's send buffer. The clients talk through a {@link TapProxy}, which
 * stands for the SSW: what they sent is the replica's instream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { NswAgent, shimPath, type Divergence, type ReplicatedConnection } from '../src/index.js';
import { MemoryRecordSink } from '../src/sink.js';
import { shimEnv, sleep, until, type RunResult } from './helpers.js';
import { TapProxy, type TappedConnection } from './tap-proxy.js';

/** A server's command line for a port. */
export interface ServerCommand {
  file: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
}

/** How a run under the shim ends. */
export type ServerEnd =
  /** The server exits by itself once the clients are done (iperf3 -1, a shutdown command). */
  | 'exit'
  /** The server keeps serving: the primary is killed once the clients are done, as a crash would. */
  | 'crash';

export interface ServerReplayOptions {
  /** Where the agents' sockets go. */
  dir: string;
  server: (port: number) => ServerCommand;
  /** Drives the server through the proxy at `port` with real clients; resolves when they are done. */
  drive: (port: number) => Promise<void>;
  end: ServerEnd;
  /** Longest run of either side, in ms. */
  timeoutMs?: number;
}

/** One replicated connection: what the client got from the primary, what the replica sent. */
export interface ComparedConnection {
  peerPort: number;
  clientSent: Buffer;
  clientGot: Buffer;
  /** The replica's send buffer (nothing acknowledged, so all it sent); null when the replica never accepted it. */
  replicaSent: Buffer | null;
  /** Client bytes the replica read. */
  replicaRead: number;
}

export interface ServerReplay {
  recorded: RunResult;
  replayed: RunResult;
  divergences: Divergence[];
  connections: ComparedConnection[];
  /** Records per stream of the primary. */
  streams: Map<string, number>;
  /** The primary's log. */
  sink: MemoryRecordSink;
  /** The playback agent, closed. */
  replicaAgent: NswAgent;
}

/** A free TCP port on loopback (bound and released: good enough for one test). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether something listens on TCP `port` (IPv4 or IPv6), from /proc/net. */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hex) && f[3] === '0A') return true;
    }
  }
  return false;
}

interface Running {
  child: ChildProcess;
  done: Promise<RunResult>;
  exited: boolean;
}

function start(cmd: ServerCommand, env: Record<string, string | undefined>, timeoutMs: number): Running {
  const child = spawn(cmd.file, cmd.args, { cwd: cmd.cwd, env: { ...process.env, ...cmd.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const r: Running = { child, exited: false, done: Promise.resolve(null as unknown as RunResult) };
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  r.done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      r.exited = true;
      resolve({ pid: child.pid ?? -1, code, signal, stdout, stderr });
    });
  });
  return r;
}

/** Waits until `agent` has had no shim connection and nothing unstable for 100 ms. */
async function settle(agent: NswAgent): Promise<void> {
  let calm = 0;
  await until(() => {
    calm = agent.counters.open === 0 && agent.counters.unstable === 0 ? calm + 1 : 0;
    return calm >= 20;
  }, 10000);
}

/**
 * Records `server` serving `drive`'s clients, then plays it back. A crashed
 * primary's replica is stopped once it has consumed every record (it would
 * wait for more forever); one that ends by itself is waited for.
 */
export async function recordAndReplay(o: ServerReplayOptions): Promise<ServerReplay> {
  const timeoutMs = o.timeoutMs ?? 30000;
  const port = await freePort();
  const proxy = new TapProxy(port);
  await proxy.listen();
  const sink = new MemoryRecordSink();
  const pair = {
    sink,
    primary: new NswAgent({ socketPath: join(o.dir, 'primary.sock'), mode: 'record', sink }),
    replica: new NswAgent({ socketPath: join(o.dir, 'replica.sock'), mode: 'playback', source: sink, instream: tapInstream(proxy) }),
    divergences: [] as Divergence[],
  };
  pair.replica.on('divergence', (d: Divergence) => pair.divergences.push(d));
  await pair.primary.listen();
  await pair.replica.listen();
  try {
    const cmd = o.server(port);
    const primary = start(cmd, { ...shimEnv(shimPath(), 'record', pair.primary.options.socketPath), FTCP_NSW_PORT: String(port) }, timeoutMs);
    await until(() => primary.exited || listening(port), 10000);
    if (primary.exited) return failed(await primary.done, 'the primary ended before it listened');
    await o.drive(proxy.port);
    if (o.end === 'crash') {
      // The server's last records (a write's, after its output commit) go out at its next flush point.
      await until(() => proxy.connections.every((c) => c.done), 10000);
      await sleep(300);
      primary.child.kill('SIGKILL');
    }
    const recorded = await primary.done;
    await settle(pair.primary);
    const streams = new Map(pair.sink.streamNames().map((s) => [s, pair.sink.records(s).length] as const));
    const total = [...streams.values()].reduce((a, b) => a + b, 0);

    const replica = start(cmd, { ...shimEnv(shimPath(), 'playback', pair.replica.options.socketPath), FTCP_NSW_PORT: String(port) }, timeoutMs);
    if (o.end === 'crash') {
      // Every record consumed and nothing more for 200 ms: the replica waits for records that will never come.
      let calm = 0;
      let last = -1;
      await until(() => {
        const played = pair.replica.counters.played;
        calm = played >= total && played === last ? calm + 1 : 0;
        last = played;
        return replica.exited || pair.divergences.length > 0 || calm >= 40;
      }, timeoutMs);
      replica.child.kill('SIGKILL');
    }
    const replayed = await replica.done;
    await settle(pair.replica);
    const connections = compare(proxy.connections, pair.replica.replicatedConnections());
    return { recorded, replayed, divergences: pair.divergences, connections, streams, sink, replicaAgent: pair.replica };
  } finally {
    await proxy.close();
    await pair.primary.close();
    await pair.replica.close();
  }

  function failed(r: RunResult, why: string): never {
    throw new Error(`${why}: code ${r.code} signal ${r.signal}\n${r.stderr}`);
  }
}

function compare(taps: TappedConnection[], replica: ReplicatedConnection[]): ComparedConnection[] {
  return taps.map((t) => {
    const r = replica.find((c) => c.peer.port === t.peerPort);
    return { peerPort: t.peerPort, clientSent: t.toServer, clientGot: t.toClient, replicaSent: r ? r.unacked : null, replicaRead: r?.instreamOffset ?? 0 };
  });
}

/** The replica's instream: the client bytes the proxy saw on the connection from `peer` (the SSW's log on a backup). */
function tapInstream(proxy: TapProxy): NonNullable<NswAgent['options']['instream']> {
  return {
    readInstream: async (peer, offset, length) => {
      const tap = proxy.byPeerPort(peer.port);
      if (!tap) throw new Error(`no tapped connection from port ${peer.port}`);
      return tap.toServer.subarray(offset, offset + length);
    },
  };
}
