/**
 * A backup node (FT-TCP 2.3, 3.9; DESIGN.md "Failover, in order"). It follows
 * the primary through the stable buffer and, when the buffer declares the
 * primary failed, takes over: the next epoch (fencing the old primary), the
 * service's rules in record mode with the old connections adopted, the VIP,
 * and the replica going live, each replicated connection rebuilt as a real
 * socket at its descriptor number. From then on it is the primary.
 *
 * `hot`: the replica runs from the start, in playback, as records arrive; a
 * backup started late catches up from the log first. `cold`: nothing runs
 * until the failure; then the replica starts and rolls forward from the log
 * while the wrap keeps the clients waiting with zero-window ACKs.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { NswAgent, type PeerAddress, type RebuildPlan, type RebuildReport, type RebuildSource, type ReplicatedConnection } from '@ftcp/nsw';
import { RecordingWrap, sendGratuitousArp, type AckStrategy, type AdoptedConnection } from '@ftcp/ssw';
import { CallWriter, ErrorCode, FtcpError, isFtcpError, ReplicaFeed, StableBufferClient, type ConnRecord, type Logger, type Positions, type Subscription } from '@ftcp/stable-buffer';
import { dotted, firstTsVal, planRebuild, rebuiltSendStart } from './rebuild-plan.js';
import { logWriteRefusals, recordingReport } from './recording-report.js';
import { Reign } from './reign.js';
import { addVip, allowNonlocalBind, capOffloadSizes, dropVip, type Service } from './service.js';
import { makeStateDir } from './state-dir.js';
import { spawnWrappedServer, stopServer } from './wrapped-server.js';

export type BackupMode = 'hot' | 'cold';

export interface BackupOptions {
  mode: BackupMode;
  service: Service;
  buffer: string;
  command: string[];
  iface?: string;
  ack?: AckStrategy;
  node?: string;
  queue?: number;
  /** Silence from the buffer (ms) after which this node, once primary, steps down. */
  failureTimeoutMs?: number;
  /** How long a takeover may wait for the replica's connections to be rebuilt before it reports what it has. */
  rebuildTimeoutMs?: number;
  logger: Logger;
}

/** How a backup ended. */
export type BackupExit =
  | { reason: 'server-exited'; code: number | null }
  | { reason: 'stopped' }
  | { reason: 'stepped-down'; silentMs: number }
  /** The log could not be followed (a refused subscription, say): this node could never take over. */
  | { reason: 'feed-ended'; error: string }
  | { reason: 'takeover-failed'; error: string }
  | { reason: 'takeover-lost'; error: string };

/** Millisecond marks of one takeover, from the failure event. */
export interface TakeoverTimeline {
  detectedAt: number;
  promotedMs: number;
  wrapMs: number;
  vipMs: number;
  /** Every replicated connection rebuilt (or the rebuild timeout). */
  rebuiltMs: number;
  connections: number;
  rebuilt: number;
  failed: number;
}

/** Dotted quad to the host-order number the buffer's records carry. */
function ipv4ToU32(address: string): number {
  return address.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

/** Client bytes and TCP facts of the old primary's connections, for the rebuilds. */
class FeedRebuildSource implements RebuildSource {
  /**
   * @param onPlanned told each connection's record and the server offset its
   *   rebuilt socket starts sending from ({@link rebuiltSendStart}), before
   *   the socket exists; the SSW clamps client acks to the kernel's edge.
   */
  constructor(
    private readonly feed: ReplicaFeed,
    private readonly onPlanned: (rec: ConnRecord, sendEdgeOffset: number) => void = () => {},
  ) {}

  async plan(conn: ReplicatedConnection): Promise<RebuildPlan> {
    const logged = this.find(conn.peer);
    if (!logged) throw new FtcpError(ErrorCode.UNKNOWN_CONNECTION, `no connection record for client ${conn.peer.address}:${conn.peer.port}`);
    const end = logged.finOffset === null ? logged.coverage.contiguousEnd : Math.min(logged.coverage.contiguousEnd, logged.finOffset);
    const unread = Math.max(0, end - conn.instreamOffset);
    const inq = unread > 0 ? await this.feed.readInstream(logged.rec.connId, conn.instreamOffset, unread) : Buffer.alloc(0);
    const view = { rec: logged.rec, stableDataEnd: end, clientAckOffset: logged.clientAckOffset, clientWindow: logged.clientWindow, clientTsEcr: logged.clientTsEcr };
    const plan = planRebuild(conn, view, inq);
    this.onPlanned(logged.rec, rebuiltSendStart(conn, view));
    return plan;
  }

  private find(peer: PeerAddress): ReturnType<ReplicaFeed['connections']>[number] | undefined {
    const ip = ipv4ToU32(peer.address);
    let found: ReturnType<ReplicaFeed['connections']>[number] | undefined;
    for (const c of this.feed.connections()) {
      if (c.rec.clientIp === ip && c.rec.clientPort === peer.port && (!found || !c.closed)) found = c;
    }
    return found;
  }
}

export class Backup {
  private server: ChildProcess | null = null;
  private agent: NswAgent | null = null;
  private feed: ReplicaFeed | null = null;
  private standby: Subscription | null = null;
  private wrap: RecordingWrap | null = null;
  /** Becomes the writer at the promotion; connected from the start so the takeover does not wait for it. */
  private readonly writer: StableBufferClient;
  /** A cold backup's second client, for the roll-forward's subscription (one per client). */
  private reader: StableBufferClient | null = null;
  private readonly follower: StableBufferClient;
  private readonly stateDir = makeStateDir('backup');
  private readonly node: string;
  private timers: NodeJS.Timeout[] = [];
  private reign: Reign | null = null;
  private finish!: (e: BackupExit) => void;
  private ending = false;
  private takingOver = false;
  private vipAdded = false;
  /** Settles once, with why the backup ended. */
  readonly done: Promise<BackupExit>;
  /** Set once this node took over. */
  timeline: TakeoverTimeline | null = null;
  epoch = 0;

  constructor(private readonly opts: BackupOptions) {
    this.node = opts.node ?? hostname();
    this.follower = StableBufferClient.connect({ endpoint: opts.buffer, node: this.node, requestTimeoutMs: 5000 });
    this.writer = StableBufferClient.connect({ endpoint: opts.buffer, node: this.node, requestTimeoutMs: 5000 });
    logWriteRefusals(this.writer, opts.logger);
    this.done = new Promise((r) => (this.finish = r));
  }

  private get logger(): Logger {
    return this.opts.logger;
  }

  /** Hot: starts the replica in playback. Cold: registers as a standby. Both then wait for the failure event. */
  async start(): Promise<void> {
    try {
      allowNonlocalBind();
      // Any answer proves the buffer is there; a wrong endpoint fails here, not at the failure.
      await this.follower.ping();
      await this.writer.ping();
      // Started now, vouching for nobody: its thread takes 100-200 ms to come
      // up on a loaded host, and from the promotion on it must already answer
      // the buffer's probes while the roll-forward keeps this thread busy.
      this.writer.startHeartbeat();
      // The service's rules and queue go in now, not in the takeover (they
      // cost ~100 ms): nothing reaches them before this host has the VIP.
      if (this.opts.iface) await capOffloadSizes(this.opts.iface);
      this.wrap = await RecordingWrap.start({
        vip: this.opts.service.vip,
        port: this.opts.service.port,
        buffer: this.writer,
        ack: this.opts.ack ?? 'eager',
        // Adopted connections need every outgoing segment (going live, deltas), whatever the strategy.
        outgoing: 'all',
        ...(this.opts.queue !== undefined ? { queue: this.opts.queue } : {}),
      });
      if (this.opts.mode === 'hot') {
        this.feed = new ReplicaFeed(this.follower, this.follower.subscribe({ fromLsn: 0, mode: 'hot' }));
        this.feed.once('failed', (f: { epoch: number }) => void this.takeOver(f.epoch));
        this.feed.on('end', (err: Error) => {
          if (this.takingOver || this.ending) return;
          // A backup that cannot follow the log must not sit there looking ready.
          this.logger.log('error', 'feed-ended', { error: String(err) });
          void this.end({ reason: 'feed-ended', error: String(err) });
        });
        await this.startReplica(this.feed);
      } else {
        this.standby = this.follower.subscribe({ fromLsn: 0, mode: 'cold' });
        void this.waitInStandby(this.standby);
      }
    } catch (err) {
      await this.cleanup();
      throw err;
    }
    this.timers.push(setInterval(() => this.follower.report(this.timeline ? 'primary' : 'backup', this.status()), 500));
    this.logger.log('info', 'backup-started', { mode: this.opts.mode, service: `${this.opts.service.vip}:${this.opts.service.port}`, pid: this.server?.pid });
  }

  /**
   * A cold standby reads the subscription only for the failure event: the
   * buffer keeps every record while a cold backup is registered, and the
   * roll-forward reads them from the start.
   */
  private async waitInStandby(sub: Subscription): Promise<void> {
    try {
      for await (const ev of sub) {
        if (ev.kind === 'failed') {
          void this.takeOver(ev.epoch);
          return;
        }
      }
    } catch (err) {
      if (!this.ending) this.logger.log('error', 'standby-subscription-failed', { error: String(err) });
    }
  }

  private async startReplica(feed: ReplicaFeed): Promise<void> {
    const socketPath = join(this.stateDir, 'nsw.sock');
    const agent = new NswAgent({
      socketPath,
      mode: 'playback',
      source: feed,
      instream: { readInstream: (peer, offset, length, signal) => feed.readClientBytes(peer, offset, length, signal) },
      rebuild: new FeedRebuildSource(feed, (rec, sendEdgeOffset) => {
        const key = { clientAddr: rec.clientIp, clientPort: rec.clientPort, serverAddr: rec.serverIp, serverPort: rec.serverPort };
        const set = this.wrap?.wrap.setRebuiltSendEdge(key, sendEdgeOffset) ?? false;
        this.logger.log(set ? 'info' : 'warn', 'rebuild-send-edge', { connId: rec.connId, sendEdgeOffset, set });
      }),
      logger: this.logger,
    });
    this.agent = agent;
    agent.on('divergence', (d: { stream: string; callNo: number; reason: string }) => this.logger.log('error', 'replica-diverged', { stream: d.stream, callNo: d.callNo, reason: d.reason }));
    // The client's acknowledgements trim the replica's send buffers (FT-TCP 3.7).
    feed.on('client-ack', (connId: number, ackOffset: number) => {
      const rec = feed.connection(connId)?.rec;
      if (!rec) return;
      for (const c of agent.replicatedConnections()) {
        if (c.peer.port === rec.clientPort && ipv4ToU32(c.peer.address) === rec.clientIp) agent.clientAcked(c.key, ackOffset);
      }
    });
    await agent.listen();
    const server = spawnWrappedServer(this.opts.command, { mode: 'playback', socketPath, port: this.opts.service.port });
    this.server = server;
    server.once('error', (err) => {
      this.logger.log('error', 'server-failed-to-start', { command: this.opts.command.join(' '), error: String(err) });
      void this.end({ reason: 'server-exited', code: null });
    });
    server.once('exit', (code, signal) => {
      if (this.reign?.steppedDown) return;
      if (code === 86) this.logger.log('error', 'replica-stopped-diverged', { code });
      void this.end({ reason: 'server-exited', code: code ?? (signal ? 128 : null) });
    });
  }

  /**
   * The failover sequence, from the epoch whose primary failed. Any step that
   * fails leaves this node unable to serve: it says so and ends. A backup that
   * another node beat to the promotion ends there, before it touches the VIP.
   */
  private async takeOver(failedEpoch: number): Promise<void> {
    if (this.takingOver || this.ending) return;
    this.takingOver = true;
    const t0 = Date.now();
    const since = (): number => Date.now() - t0;
    this.logger.log('warn', 'failure-detected', { mode: this.opts.mode });
    let rollForward: RollForwardWatch | undefined;
    try {
      if (this.agent && !this.agent.canTakeOver) throw new FtcpError(ErrorCode.CONFLICT, 'the replica diverged from the primary; it cannot take over');
      const writer = this.writer;
      const { epoch, positions } = await writer.promote(failedEpoch).catch((err: unknown) => {
        throw isFtcpError(err, ErrorCode.STALE_EPOCH) ? new TakeoverLost(err.message) : err;
      });
      await writer.attachAsWriter(epoch);
      this.epoch = epoch;
      const promotedMs = since();
      this.logger.log('warn', 'promoted', { epoch, ms: promotedMs, headLsn: positions.headLsn });

      let feed = this.feed;
      if (!feed) {
        // Cold: the replica starts now and rolls forward from the first record.
        this.standby?.end();
        const reader = StableBufferClient.connect({ endpoint: this.opts.buffer, node: `${this.node}/roll-forward`, requestTimeoutMs: 5000 });
        this.reader = reader;
        feed = new ReplicaFeed(reader, reader.subscribe({ fromLsn: 0, mode: 'observer' }));
        this.feed = feed;
        await this.startReplica(feed);
        // The replica process is up once its shim says HELLO; the log fetch goes on meanwhile.
        this.agent!.once('hello', (stream: string) => this.logger.log('warn', 'replica-started', { ms: since(), stream }));
      }
      rollForward = this.watchRollForward(positions, since);
      await this.caughtUp(feed, positions.headLsn);
      // The log up to the promotion's head, as this node fetched it: a cold
      // replica replays all of it (the client bytes its server had not read
      // yet go into the rebuilt sockets' receive queues instead).
      const log = { headLsn: positions.headLsn, records: feed.fetched.records, callBytes: feed.fetched.callBytes, segmentBytes: feed.fetched.segmentBytes };
      const logBytes = log.callBytes + log.segmentBytes;
      const fetchedMs = since();
      this.logger.log('warn', 'log-fetched', { mode: this.opts.mode, ms: fetchedMs, ...log, logBytes });

      const adopt = this.adoptable(feed, positions);
      const wrap = this.wrap!;
      wrap.adopt(adopt);
      const wrapMs = since();
      if (this.opts.iface) {
        await addVip(this.opts.iface, this.opts.service.vip);
        this.vipAdded = true;
        // The first announcement leaves before this call returns; the repeats
        // (a lost one must not cost seconds) go on while the replica goes live.
        sendGratuitousArp(this.opts.iface, this.opts.service.vip).catch((err: unknown) => this.logger.log('warn', 'garp-failed', { error: String(err) }));
      }
      // Tell every adopted client now, not at the next keep-alive tick, that
      // someone holds its connection: a long roll-forward has begun.
      wrap.keepPendingAlive();
      const vipMs = since();
      this.logger.log('warn', 'vip-moved', { iface: this.opts.iface ?? null, ms: vipMs, adopted: adopt.length });

      const loggedCalls = loggedCallsOf(positions);
      // How far the replica's playback trails the log: the roll-forward still to do.
      this.logger.log('info', 'replay-behind', { calls: loggedCalls - this.agent!.counters.played, loggedCalls });
      const rebuilt = this.awaitRebuilds(adopt, loggedCalls);
      this.agent!.goLive(new Map(positions.streams.map((s) => [s.stream, s.lastCallNo])), new CallWriter(writer));
      const { ok, failed, rebuiltPeers } = await rebuilt;
      const left = adopt.filter((a) => !rebuiltPeers.has(peerKey(a.rec.clientIp, a.rec.clientPort)));
      // A connection no accept of the replica names was still in the dead
      // primary's accept queue: the live server accepts it once the kernel
      // has it again, by a spoofed handshake.
      const handshakes = await Promise.all(left.map((a) => (this.agent!.hasAccepted(peerOf(a)) ? Promise.resolve(false) : this.rebuildUnaccepted(feed, a))));
      // A connection the replica no longer holds (closed during the roll-forward)
      // or could not rebuild has no socket: its client must learn that (the
      // kernel's RST) instead of waiting on zero-window ACKs for ever.
      left.forEach((a, i) => {
        if (!handshakes[i] && wrap.releasePending(a.rec.connId)) {
          this.logger.log('warn', 'connection-not-rebuilt', { connId: a.rec.connId, client: `${dotted(a.rec.clientIp)}:${a.rec.clientPort}` });
        }
      });
      const byHandshake = handshakes.filter(Boolean).length;
      const rebuiltMs = since();
      // A rebuild by the replica waited for every thread of its process to play its records (NswAgent's ADOPT).
      if (ok > 0) rollForward.settle('rebuilt');
      this.logger.log('warn', 'connections-rebuilt', { ms: rebuiltMs, connections: adopt.length, rebuilt: ok + byHandshake, byHandshake, failed });
      this.timeline = { detectedAt: t0, promotedMs, wrapMs, vipMs, rebuiltMs, connections: adopt.length, rebuilt: ok + byHandshake, failed };
      this.logger.log('warn', 'takeover-complete', {
        epoch, connections: adopt.length, rebuilt: ok + byHandshake, byHandshake, failed, ms: rebuiltMs, promotedMs, fetchedMs, wrapMs, vipMs,
        rolledForwardMs: rollForward.at ?? null, ...log, logBytes,
      });
      this.reign = new Reign({
        client: writer,
        epoch,
        service: this.opts.service,
        ...(this.opts.iface ? { iface: this.opts.iface } : {}),
        failureTimeoutMs: this.opts.failureTimeoutMs ?? 30,
        server: () => this.server,
        logger: this.logger,
        mute: (on) => this.wrap?.mute(on),
      silence: () => this.wrap?.abandon(),
      onSteppedDown: (silentMs) => void this.steppedDown(silentMs),
      });
      this.reign.start();
      // The replica is live: the feed's records are this node's own from here.
      await this.feed?.close().catch(() => {});
    } catch (err) {
      rollForward?.stop();
      if (err instanceof TakeoverLost) {
        // Nothing of the service was touched: the node that won serves it.
        this.logger.log('warn', 'takeover-lost', { error: err.message, ms: since() });
        await this.end({ reason: 'takeover-lost', error: err.message });
        return;
      }
      this.logger.log('error', 'takeover-failed', { error: String(err), ms: since() });
      await this.end({ reason: 'takeover-failed', error: String(err) });
    }
  }

  /**
   * Gives the kernel a connection the dead primary's server never accepted
   * (see RecordingWrap.rebuildByHandshake): every stable client byte and the
   * FIN if logged. True once the kernel has it; false, logged, when it could
   * not be done.
   */
  private async rebuildUnaccepted(feed: ReplicaFeed, a: AdoptedConnection): Promise<boolean> {
    const client = `${dotted(a.rec.clientIp)}:${a.rec.clientPort}`;
    try {
      const c = feed.connection(a.rec.connId);
      const instream = a.stableOffset > 0 ? await feed.readInstream(a.rec.connId, 0, a.stableOffset) : Buffer.alloc(0);
      const r = await this.wrap!.rebuildByHandshake(a.rec.connId, {
        instream,
        fin: c?.finOffset === a.stableOffset,
        firstTsVal: firstTsVal(a.rec, a.clientTsEcr),
        clientWindow: a.clientWindow,
        clientSynTsVal: a.rec.clientTsval,
      });
      if (r.ok) this.logger.log('info', 'rebuilt-by-handshake', { connId: a.rec.connId, client, bytes: instream.length });
      else this.logger.log('warn', 'handshake-rebuild-failed', { connId: a.rec.connId, client, reason: r.reason });
      return r.ok;
    } catch (err) {
      this.logger.log('warn', 'handshake-rebuild-failed', { connId: a.rec.connId, client, reason: String(err) });
      return false;
    }
  }

  /**
   * Logs `rolled-forward` once the replica has rolled forward to the end of
   * the log the promotion found: it played every call record (`by: played`),
   * or every stream with records went live (`by: live`; a thread whose last
   * record was a clock read it only peeked), or, through {@link RollForwardWatch.settle},
   * the replica's rebuilds proved it (`by: rebuilt`). Checked every
   * millisecond and at each rebuild; it runs on after the takeover when no
   * connection waits for it, and gives up after 120 s.
   */
  private watchRollForward(positions: Positions, since: () => number): RollForwardWatch {
    const agent = this.agent!;
    const calls = loggedCallsOf(positions);
    const streams = positions.streams.filter((st) => st.lastCallNo > 0).map((st) => st.stream);
    const stop = (): void => {
      clearInterval(poll);
      clearTimeout(cap);
      agent.off('rebuilt', check);
    };
    const watch: RollForwardWatch = {
      at: undefined,
      settle: (by) => {
        if (watch.at !== undefined) return;
        stop();
        watch.at = since();
        // instreamBytes: client bytes read again from the buffer for the replica's reads (the segments brought them once already).
        this.logger.log('warn', 'rolled-forward', {
          mode: this.opts.mode, ms: watch.at, by, calls, played: agent.counters.played, streams: streams.length, live: agent.counters.wentLive, instreamBytes: this.feed?.fetched.instreamBytes ?? null,
        });
      },
      stop,
    };
    function check(): void {
      if (agent.counters.played >= calls) watch.settle('played');
      else if (streams.length > 0 && agent.counters.wentLive >= streams.length) {
        const live = new Set(agent.liveStreams());
        if (streams.every((st) => live.has(st))) watch.settle('live');
      }
    }
    const poll = setInterval(check, 1);
    const cap = setTimeout(stop, 120_000);
    poll.unref();
    cap.unref();
    this.timers.push(poll);
    agent.on('rebuilt', check);
    check();
    return watch;
  }

  /** Waits until the feed has applied every record the log held at the promotion. */
  private async caughtUp(feed: ReplicaFeed, headLsn: number): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (feed.appliedUpTo < headLsn) {
      if (Date.now() > deadline) throw new FtcpError(ErrorCode.TIMEOUT, `the log's records up to ${headLsn} did not arrive within 60 s (at ${feed.appliedUpTo})`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** The old primary's open connections, as the wrap adopts them. */
  private adoptable(feed: ReplicaFeed, positions: Positions): AdoptedConnection[] {
    const closed = new Set(positions.conns.filter((c) => c.closed).map((c) => c.connId));
    return feed
      .connections()
      .filter((c) => !c.closed && !closed.has(c.rec.connId))
      .map((c) => ({
        rec: c.rec,
        stableOffset: c.finOffset === null ? c.coverage.contiguousEnd : Math.min(c.coverage.contiguousEnd, c.finOffset),
        clientAckOffset: c.clientAckOffset,
        clientWindow: c.clientWindow,
        clientTsEcr: c.clientTsEcr,
      }));
  }

  /**
   * Resolves once every adopted connection was rebuilt or reported failed,
   * or once the replica has played every call the log held (a cold replica
   * only gets there after its roll-forward) and holds no socket for the
   * connections still missing: it closed them during the roll-forward. The
   * rebuild timeout bounds the wait.
   */
  private awaitRebuilds(adopt: readonly AdoptedConnection[], loggedCalls: number): Promise<{ ok: number; failed: number; rebuiltPeers: Set<string> }> {
    const agent = this.agent!;
    let ok = 0;
    let failed = 0;
    const rebuiltPeers = new Set<string>();
    const missing = new Set(adopt.map((a) => peerKey(a.rec.clientIp, a.rec.clientPort)));
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        agent.off('rebuilt', onRebuilt);
        resolve({ ok, failed, rebuiltPeers });
      };
      const check = (): void => {
        if (missing.size > 0 && agent.counters.played >= loggedCalls) {
          const held = new Set(agent.replicatedConnections().map((c) => peerKey(ipv4ToU32(c.peer.address), c.peer.port)));
          for (const p of missing) if (!held.has(p)) missing.delete(p);
        }
        if (missing.size === 0) done();
      };
      const onRebuilt = (r: RebuildReport): void => {
        const key = r.peer ? peerKey(ipv4ToU32(r.peer.address), r.peer.port) : undefined;
        if (r.ok) {
          ok++;
          if (key !== undefined) rebuiltPeers.add(key);
        } else {
          failed++;
          this.logger.log('error', 'rebuild-failed', { stream: r.stream, fd: r.fd, error: r.error });
        }
        if (key !== undefined) missing.delete(key);
        check();
      };
      const timer = setTimeout(done, this.opts.rebuildTimeoutMs ?? 30_000);
      const poll = setInterval(check, 5);
      agent.on('rebuilt', onRebuilt);
      check();
    });
  }

  /** What `ftcp status` shows of this node. */
  status(): Record<string, unknown> {
    const w = this.timeline ? this.wrap?.status() : undefined;
    return {
      mode: this.reign?.quiet ? 'quiet' : this.timeline ? 'record' : this.opts.mode === 'hot' ? 'playback' : 'standby',
      epoch: this.epoch,
      connections: w?.connections ?? this.agent?.replicatedConnections().length ?? 0,
      replicaLagRecords: this.feed ? this.feed.held : 0,
      callsPlayed: this.agent?.counters.played ?? 0,
      callsRecorded: this.agent?.counters.recorded ?? 0,
      divergences: this.agent?.counters.divergences ?? 0,
      unstableRecords: this.agent?.counters.unstable ?? 0,
      ...(this.timeline ? { takeover: this.timeline } : {}),
      ...(w ? { pending: w.pending, zeroWindowAcks: w.recorder.zeroWindowAcks, goLiveAcks: w.recorder.goLiveAcks, headsDelivered: w.recorder.headsDelivered, pendingReleased: w.recorder.pendingReleased, acksInjected: w.recorder.acksInjected, acksClamped: w.wrap.acksClamped, seqsLifted: w.wrap.seqsLifted, wentLive: w.wrap.wentLive, pendingDropped: w.wrap.pendingDropped } : {}),
      // In record mode (after the takeover) it reports what a primary does.
      ...(w ? recordingReport(this.agent, w, this.writer) : {}),
    };
  }

  /** As the primary, the reign ended (see Reign): it silenced the wrap; the rules stay and drop what is left. */
  private async steppedDown(silentMs: number): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    this.vipAdded = false;
    await this.cleanup(true);
    this.finish({ reason: 'stepped-down', silentMs });
  }

  /** Clean shutdown. */
  async stop(): Promise<void> {
    await this.end({ reason: 'stopped' });
  }

  private async end(e: BackupExit): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    await stopServer(this.server);
    await this.cleanup();
    this.finish(e);
  }

  private async cleanup(keepRules = false): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.reign?.stop();
    if (!keepRules) {
      await this.wrap?.stop().catch((err: unknown) => this.logger.log('error', 'rules-removal-failed', { error: String(err) }));
      // A backup that took the VIP and ends cleanly gives it back: no address without its service.
      if (this.vipAdded && this.opts.iface) await dropVip(this.opts.iface, this.opts.service.vip).catch(() => {});
    }
    this.standby?.end();
    await this.feed?.close().catch(() => {});
    await this.agent?.close().catch(() => {});
    // Awaited: the process exits next, and must not under a heartbeat's thread.
    await Promise.all([this.writer.close(), this.reader?.close(), this.follower.close()]);
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

/** Watches a promoted replica's roll-forward (see Backup.watchRollForward). */
interface RollForwardWatch {
  /** When it rolled forward, ms since the failure event; undefined until then. */
  at: number | undefined;
  /** Logs `rolled-forward` now, if not yet: something else proved it. */
  settle(by: 'played' | 'live' | 'rebuilt'): void;
  stop(): void;
}

/** Call records the log held at the promotion, all streams together. */
function loggedCallsOf(positions: Positions): number {
  return positions.streams.reduce((n, st) => n + st.lastCallNo, 0);
}

/** The client of an adopted connection, as the replica's accept saw it. */
function peerOf(a: AdoptedConnection): Pick<PeerAddress, 'address' | 'port'> {
  return { address: dotted(a.rec.clientIp), port: a.rec.clientPort };
}

/** A client's address and port as one key: the rebuild reports name connections by their peer. */
function peerKey(ipU32: number, port: number): string {
  return `${ipU32}:${port}`;
}

/** Another node took the epoch after the failed one first (its promotion won). */
class TakeoverLost extends Error {}
