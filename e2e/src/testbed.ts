/**
 * The test bed: hosts as network namespaces on one machine (DESIGN.md,
 * "Testing on one machine").
 *
 * ```
 *   client ns            lan ns                      primary ns        backup ns
 *   lan0 10.213.0.2 ---- client ┐                   ┌ lan0 10.213.0.11 lan0 10.213.0.12
 *                               br0 ── primary ─────┘  (+ VIP .100)      |
 *                               └───── backup ─────────────────────────┘
 *                                                      rep0 10.213.1.1 ─ rep0 10.213.1.2
 * ```
 *
 * Nothing lives in the root namespace: each veth is created inside one of
 * the bed's namespaces with its peer placed straight into another (`ip -n A
 * link add X type veth peer name Y netns B`), so interface names are short
 * and fixed (`lan0`, `rep0`, a bridge port named after its host) and two
 * beds, even of two processes, never clash. The same addresses can be used
 * by every bed for the same reason. Deleting the namespaces deletes every
 * device with them.
 *
 * With `spare: true` the bed has a fourth host, `spare` (LAN 10.213.0.13),
 * and a replica network beside the replica link: a second bridge `rbr0` in
 * the `lan` namespace joining an `rep1` of the primary (10.213.2.1), the
 * backup (.2) and the spare (.3). A stable buffer on the spare outlives a
 * crash of the primary and then of the backup, and a backup started on the
 * spare later follows whichever of them is primary (issue 5: "After
 * promotion the new primary keeps serving old and new connections and keeps
 * recording, so a new backup can join later").
 *
 * IPv6 is off in every namespace so captures hold only what a test caused
 * (no router solicitations, no MLD). `ip_nonlocal_bind` is on in the primary
 * and the backup, so a server there may bind the VIP before the host owns it
 * (issue 5: "The server may bind the VIP before the backup owns it").
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCapture, type Capture, type CaptureOptions } from './capture.js';
import { registerLive, unregisterLive, type SyncDestroyable } from './cleanup.js';
import { TestbedError, TestbedErrorCode } from './errors.js';
import { sendGratuitousArp, type GarpOptions } from './garp.js';
import { newTag, nsName } from './names.js';
import { ipIn, nsCreate, nsDelete, nsDeleteSync, nsExec, nsKillAll, nsLinks, nsSysctl } from './netns.js';
import { removeNodeStateDirs } from './node-state-dirs.js';
import { HostProcess, type SpawnOptions } from './process.js';
import { clearQdisc, setTbf } from './ratelimit.js';
import type { RunOptions, RunResult } from './run.js';

/** The hosts of a bed (`spare` only in a bed made with `spare: true`). */
export type HostRole = 'client' | 'primary' | 'backup' | 'spare';

/** The host roles of every bed, in the order the bed builds them. */
export const HOST_ROLES: readonly HostRole[] = ['client', 'primary', 'backup'];

/** A namespace of the bed: a host, or `lan`, the namespace that holds the bridge. */
export type NsRole = HostRole | 'lan';

/** The interface of every host on the LAN. */
export const LAN_IF = 'lan0';
/** The interface of the primary and the backup on the replica link. */
export const REPLICA_IF = 'rep0';
/** The interface of the primary, the backup and the spare on the replica network (a bed with a spare). */
export const REPLICA_NET_IF = 'rep1';
/** The replica network's bridge inside the `lan` namespace (a bed with a spare). */
export const REPLICA_BRIDGE_IF = 'rbr0';
/** The iptables chain {@link Testbed.partitionReplica} fills. */
export const PARTITION_CHAIN = 'FTCP-E2E-PART';
/** The bridge inside the `lan` namespace. */
export const BRIDGE_IF = 'br0';

/** Addresses of a bed; every field has a default. */
export interface TestbedAddresses {
  /** LAN address of each host (prefix length {@link TestbedAddresses.lanPrefix}). */
  readonly client: string;
  readonly primary: string;
  readonly backup: string;
  /** Prefix length of the LAN; default 24. */
  readonly lanPrefix: number;
  /** The service address, added as a /32 to its owner's `lan0`. */
  readonly vip: string;
  /** Replica link addresses (prefix {@link TestbedAddresses.replicaPrefix}). */
  readonly replicaPrimary: string;
  readonly replicaBackup: string;
  /** Prefix length of the replica link; default 24. */
  readonly replicaPrefix: number;
  /** LAN address of the spare host (a bed with a spare). */
  readonly spare: string;
  /** Replica network addresses of the primary, the backup and the spare (prefix {@link TestbedAddresses.replicaNetPrefix}). */
  readonly replicaNetPrimary: string;
  readonly replicaNetBackup: string;
  readonly replicaNetSpare: string;
  readonly replicaNetPrefix: number;
}

/** Default addresses: LAN 10.213.0.0/24, VIP 10.213.0.100, replica link 10.213.1.0/24. */
export const DEFAULT_ADDRESSES: TestbedAddresses = {
  client: '10.213.0.2',
  primary: '10.213.0.11',
  backup: '10.213.0.12',
  lanPrefix: 24,
  vip: '10.213.0.100',
  replicaPrimary: '10.213.1.1',
  replicaBackup: '10.213.1.2',
  replicaPrefix: 24,
  spare: '10.213.0.13',
  replicaNetPrimary: '10.213.2.1',
  replicaNetBackup: '10.213.2.2',
  replicaNetSpare: '10.213.2.3',
  replicaNetPrefix: 24,
};

/** Options of {@link Testbed.create}. */
export interface TestbedOptions {
  /** Override some addresses. */
  readonly addresses?: Partial<TestbedAddresses>;
  /** Which host holds the VIP at the start; default `primary`; null for nobody. */
  readonly vipOwner?: HostRole | null;
  /**
   * Turn off TSO, GSO and GRO on every veth, so segments on the wire and in
   * captures are at most one MSS, as on real NICs' wire. Default false
   * (kernel defaults: a capture may show 64 KiB "segments").
   */
  readonly disableOffloads?: boolean;
  /**
   * Add the `spare` host and the replica network (see the module comment).
   * Default false: client, primary and backup only.
   */
  readonly spare?: boolean;
}

/** One host of the bed. */
export interface Host {
  readonly role: HostRole;
  /** Its namespace's name. */
  readonly ns: string;
  /** Its LAN interface inside its namespace (always {@link LAN_IF}). */
  readonly lanIf: string;
  /** Its own LAN address (not the VIP). */
  readonly lanAddr: string;
  /** The MAC of its LAN interface, lower-case `aa:bb:...`. */
  readonly lanMac: string;
  /** The name of its port on the bridge, in the `lan` namespace. */
  readonly bridgePort: string;
  /** Its replica-link interface (primary and backup only). */
  readonly replicaIf: string | undefined;
  /** Its replica-link address (primary and backup only). */
  readonly replicaAddr: string | undefined;
  /** Its address on the replica network (a bed with a spare; not the client). */
  readonly replicaNetAddr: string | undefined;
}

/** Rate limits of a host's LAN link, in Mbit/s; an absent direction is unlimited. */
export interface LinkRate {
  /** What the host sends (tbf on its `lan0`). */
  readonly upMbit?: number;
  /** What the host receives (tbf on its bridge port). */
  readonly downMbit?: number;
  /** Queue size as a delay, ms; default 50. */
  readonly latencyMs?: number;
}

/** What {@link Testbed.crash} did, with wall-clock times (ms since the epoch, as `Date.now()`). */
export interface CrashReport {
  readonly host: HostRole;
  /** Interfaces set down. */
  readonly cutInterfaces: readonly string[];
  /** When the last interface was down: from here on nothing leaves the host. */
  readonly cutAt: number;
  /** Pids that were sent SIGKILL. */
  readonly killedPids: readonly number[];
  /** When the namespace was seen empty of processes. */
  readonly killedAt: number;
}

/** Options of {@link Testbed.moveVip}. */
export interface MoveVipOptions extends GarpOptions {
  /** Send gratuitous ARP from the new owner; default true. */
  readonly announce?: boolean;
}

/** Timing of {@link Testbed.moveVip}, ms since the epoch. */
export interface MoveVipReport {
  readonly from: HostRole | null;
  readonly to: HostRole;
  /** When the new owner had the address. */
  readonly addedAt: number;
  /** When the last announcement was sent; undefined without announcement. */
  readonly announcedAt: number | undefined;
}

/** A neighbour (ARP) entry as a host sees it. */
export interface Neighbor {
  readonly addr: string;
  /** Link-layer address, or undefined while unresolved. */
  readonly mac: string | undefined;
  /** Kernel states, e.g. `["REACHABLE"]`, `["STALE"]`. */
  readonly state: readonly string[];
}

/**
 * A client, a primary and a backup host, joined by a LAN bridge, with a
 * service VIP and a replica link; see the module comment for the layout.
 * Make one with {@link Testbed.create}; always {@link Testbed.destroy} it (an
 * exit or SIGINT/SIGTERM hook does it if a test runner cannot).
 */
export class Testbed implements SyncDestroyable {
  /** The bed's tag, `<pid>-<4 hex>`; every namespace name holds it. */
  readonly tag: string;
  /** Addresses in use. */
  readonly addresses: TestbedAddresses;
  /** The service address. */
  readonly vip: string;
  /** The hosts of this bed, in the order it builds them. */
  readonly hostRoles: readonly HostRole[];
  private readonly hostMap = new Map<HostRole, Host>();
  private readonly nsNames: Map<NsRole, string>;
  private readonly created: string[] = [];
  private readonly procs: HostProcess[] = [];
  private readonly crashedHosts = new Set<HostRole>();
  /** Every pid the bed SIGKILLed: their node directories are the bed's to remove. */
  private readonly killedPids = new Set<number>();
  /** Whether {@link Testbed.armPartition} has put the partition chain in place. */
  private partitionArmed = false;
  private owner: HostRole | null = null;
  private captureDir: string | undefined;
  private destroying: Promise<void> | undefined;

  private constructor(tag: string, addresses: TestbedAddresses, spare: boolean) {
    this.tag = tag;
    this.addresses = addresses;
    this.vip = addresses.vip;
    this.hostRoles = spare ? [...HOST_ROLES, 'spare'] : HOST_ROLES;
    this.nsNames = new Map((['lan', ...this.hostRoles] as NsRole[]).map((r) => [r, nsName(tag, r)]));
  }

  /**
   * Builds a bed: four namespaces, the bridge, three LAN links, the replica
   * link, the VIP on its owner. Takes a few hundred milliseconds. If any step
   * fails, everything made so far is removed before the error is thrown.
   */
  static async create(opts: TestbedOptions = {}): Promise<Testbed> {
    const bed = new Testbed(newTag(), { ...DEFAULT_ADDRESSES, ...opts.addresses }, opts.spare === true);
    registerLive(bed);
    try {
      await bed.build(opts);
    } catch (err) {
      await bed.destroy().catch(() => undefined);
      throw err;
    }
    return bed;
  }

  private async build(opts: TestbedOptions): Promise<void> {
    const a = this.addresses;
    const lan = this.ns('lan');
    const roles = this.hostRoles;
    for (const role of ['lan', ...roles] as NsRole[]) {
      const ns = this.ns(role);
      await nsCreate(ns);
      this.created.push(ns);
    }
    await Promise.all(
      (['lan', ...roles] as NsRole[]).map(async (role) => {
        const ns = this.ns(role);
        // Before any device exists, so new devices inherit `default`.
        await nsSysctl(ns, {
          'net.ipv6.conf.all.disable_ipv6': 1,
          'net.ipv6.conf.default.disable_ipv6': 1,
          ...(role === 'primary' || role === 'backup' || role === 'spare' ? { 'net.ipv4.ip_nonlocal_bind': 1 } : {}),
        });
        await ipIn(ns, ['link', 'set', 'lo', 'up']);
      }),
    );
    // STP off: ports forward as soon as they have carrier, no 15 s listening state.
    await ipIn(lan, ['link', 'add', BRIDGE_IF, 'type', 'bridge', 'stp_state', '0']);
    await ipIn(lan, ['link', 'set', BRIDGE_IF, 'up']);
    await Promise.all(
      roles.map(async (role) => {
        const ns = this.ns(role);
        await ipIn(ns, ['link', 'add', LAN_IF, 'type', 'veth', 'peer', 'name', role, 'netns', lan]);
        await ipIn(lan, ['link', 'set', role, 'master', BRIDGE_IF, 'up']);
        await ipIn(ns, ['addr', 'add', `${a[role]}/${a.lanPrefix}`, 'dev', LAN_IF]);
        await ipIn(ns, ['link', 'set', LAN_IF, 'up']);
      }),
    );
    const p = this.ns('primary');
    const b = this.ns('backup');
    await ipIn(p, ['link', 'add', REPLICA_IF, 'type', 'veth', 'peer', 'name', REPLICA_IF, 'netns', b]);
    await ipIn(p, ['addr', 'add', `${a.replicaPrimary}/${a.replicaPrefix}`, 'dev', REPLICA_IF]);
    await ipIn(b, ['addr', 'add', `${a.replicaBackup}/${a.replicaPrefix}`, 'dev', REPLICA_IF]);
    await ipIn(p, ['link', 'set', REPLICA_IF, 'up']);
    await ipIn(b, ['link', 'set', REPLICA_IF, 'up']);
    const netRoles = roles.filter((r) => r !== 'client');
    const netAddr = (role: HostRole): string | undefined =>
      !roles.includes('spare') ? undefined : role === 'primary' ? a.replicaNetPrimary : role === 'backup' ? a.replicaNetBackup : role === 'spare' ? a.replicaNetSpare : undefined;
    if (roles.includes('spare')) {
      // The replica network: every server host's rep1 on a second bridge, ports named r<role>.
      await ipIn(lan, ['link', 'add', REPLICA_BRIDGE_IF, 'type', 'bridge', 'stp_state', '0']);
      await ipIn(lan, ['link', 'set', REPLICA_BRIDGE_IF, 'up']);
      await Promise.all(
        netRoles.map(async (role) => {
          const ns = this.ns(role);
          await ipIn(ns, ['link', 'add', REPLICA_NET_IF, 'type', 'veth', 'peer', 'name', `r${role}`, 'netns', lan]);
          await ipIn(lan, ['link', 'set', `r${role}`, 'master', REPLICA_BRIDGE_IF, 'up']);
          await ipIn(ns, ['addr', 'add', `${netAddr(role)!}/${a.replicaNetPrefix}`, 'dev', REPLICA_NET_IF]);
          await ipIn(ns, ['link', 'set', REPLICA_NET_IF, 'up']);
        }),
      );
    }
    if (opts.disableOffloads === true) {
      const ends: Array<[NsRole, string]> = [
        ...roles.map((r): [NsRole, string] => [r, LAN_IF]),
        ...roles.map((r): [NsRole, string] => ['lan', r]),
        ['primary', REPLICA_IF],
        ['backup', REPLICA_IF],
        ...(roles.includes('spare') ? netRoles.flatMap((r): Array<[NsRole, string]> => [[r, REPLICA_NET_IF], ['lan', `r${r}`]]) : []),
      ];
      await Promise.all(ends.map(([r, dev]) => nsExec(this.ns(r), 'ethtool', ['-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off'])));
    }
    for (const role of roles) {
      const ns = this.ns(role);
      const links = await nsLinks(ns);
      const lanMac = links.find((l) => l.ifname === LAN_IF)?.address;
      if (lanMac === undefined) throw new TestbedError(TestbedErrorCode.COMMAND_FAILED, `no MAC found for ${LAN_IF} in ${ns}`);
      const onReplica = role === 'primary' || role === 'backup';
      this.hostMap.set(role, {
        role,
        ns,
        lanIf: LAN_IF,
        lanAddr: a[role],
        lanMac,
        bridgePort: role,
        replicaIf: onReplica ? REPLICA_IF : undefined,
        replicaAddr: role === 'primary' ? a.replicaPrimary : role === 'backup' ? a.replicaBackup : undefined,
        replicaNetAddr: netAddr(role),
      });
    }
    const owner = opts.vipOwner === undefined ? 'primary' : opts.vipOwner;
    if (owner !== null) {
      await ipIn(this.ns(owner), ['addr', 'add', `${this.vip}/32`, 'dev', LAN_IF]);
      this.owner = owner;
    }
  }

  /** The namespace name of a host or of `lan`. */
  ns(role: NsRole): string {
    const ns = this.nsNames.get(role);
    if (ns === undefined) throw new TestbedError(TestbedErrorCode.BAD_USAGE, `no such host: ${String(role)}`);
    return ns;
  }

  /** Every namespace this bed made (and has not deleted yet). */
  get namespaces(): readonly string[] {
    return [...this.created];
  }

  /** A host's description. */
  host(role: HostRole): Host {
    const h = this.hostMap.get(role);
    if (h === undefined) throw new TestbedError(TestbedErrorCode.BAD_USAGE, `no such host: ${String(role)} (bed ${this.tag} not built?)`);
    return h;
  }

  /** The host that holds the VIP now, or null. */
  get vipOwner(): HostRole | null {
    return this.owner;
  }

  /** Whether {@link Testbed.crash} has crashed this host. */
  isCrashed(role: HostRole): boolean {
    return this.crashedHosts.has(role);
  }

  /** Every process {@link Testbed.spawn} started, in order. */
  get processes(): readonly HostProcess[] {
    return this.procs;
  }

  private live(): void {
    if (this.destroying) throw new TestbedError(TestbedErrorCode.BAD_USAGE, `test bed ${this.tag} is destroyed`);
  }

  /** Runs `cmd args` inside a host to completion (`ip netns exec`); throws with its stderr if it fails. */
  exec(role: NsRole, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.live();
    return nsExec(this.ns(role), cmd, args, opts);
  }

  /** Runs `ip ARGS` acting inside a host (`ip -n`). */
  ip(role: NsRole, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.live();
    return ipIn(this.ns(role), args, opts);
  }

  /**
   * Starts `cmd args` inside a host and tracks it; {@link Testbed.destroy}
   * kills whatever is still running.
   */
  spawn(role: NsRole, cmd: string, args: readonly string[], opts: SpawnOptions = {}): HostProcess {
    this.live();
    const proc = HostProcess.start(role, this.ns(role), cmd, args, opts);
    this.procs.push(proc);
    return proc;
  }

  /**
   * Starts tcpdump on a host (default interface `lan0`; for `lan`, pass
   * `iface: 'br0'` or a port name) and resolves once it listens. Files go to
   * a directory of the bed that {@link Testbed.destroy} removes, unless the
   * environment sets `FTCP_E2E_KEEP_CAPTURES=1`.
   */
  async capture(role: NsRole, opts: CaptureOptions = {}): Promise<Capture> {
    this.live();
    this.captureDir ??= mkdtempSync(join(tmpdir(), `ftcp-${this.tag}-`));
    const file = opts.file ?? join(this.captureDir, `${role}-${this.procs.length}.pcap`);
    const cap = await startCapture(role, this.ns(role), { ...opts, file });
    this.procs.push(cap.process);
    return cap;
  }

  /** The host's neighbour (ARP) entry for `addr` on `lan0`, or undefined if it has none. */
  async neighbor(role: HostRole, addr: string): Promise<Neighbor | undefined> {
    const out = (await this.ip(role, ['-j', 'neigh', 'show', 'to', addr, 'dev', LAN_IF])).stdout.trim();
    const entries = (out === '' ? [] : JSON.parse(out)) as Array<{ dst: string; lladdr?: string; state?: string[] }>;
    const e = entries.find((n) => n.dst === addr);
    return e === undefined ? undefined : { addr, mac: e.lladdr, state: e.state ?? [] };
  }

  /**
   * Moves the VIP to `to`: deletes it from its owner (even a crashed one,
   * whose links are down anyway), adds it to `to`, then announces it with
   * gratuitous ARP unless `announce` is false.
   */
  async moveVip(to: HostRole, opts: MoveVipOptions = {}): Promise<MoveVipReport> {
    this.live();
    const from = this.owner;
    if (from === to) throw new TestbedError(TestbedErrorCode.BAD_USAGE, `the VIP is on ${to} already`);
    if (from !== null) {
      await this.ip(from, ['addr', 'del', `${this.vip}/32`, 'dev', LAN_IF]);
      this.owner = null;
    }
    await this.ip(to, ['addr', 'add', `${this.vip}/32`, 'dev', LAN_IF]);
    this.owner = to;
    const addedAt = Date.now();
    let announcedAt: number | undefined;
    if (opts.announce !== false) {
      await this.announceVip(opts);
      announcedAt = Date.now();
    }
    return { from, to, addedAt, announcedAt };
  }

  /** Sends gratuitous ARP for the VIP from its owner's `lan0`; see garp.ts for how and why. */
  async announceVip(opts: GarpOptions = {}): Promise<void> {
    this.live();
    if (this.owner === null) throw new TestbedError(TestbedErrorCode.BAD_USAGE, 'nobody holds the VIP; nothing to announce');
    await sendGratuitousArp(this.ns(this.owner), LAN_IF, this.vip, opts);
  }

  /**
   * Sets one interface of a host up or down, e.g. the replica link for a
   * partition. (Down means no carrier at the peer too.)
   */
  async setLink(role: NsRole, iface: string, up: boolean): Promise<void> {
    await this.ip(role, ['link', 'set', 'dev', iface, up ? 'up' : 'down']);
  }

  /**
   * Cuts the replica link between the primary and the backup (issue 5: "a
   * partition of the replica link makes the primary step down").
   *
   * - `silent` (default): iptables rules in a chain of our own
   *   (`FTCP-E2E-PART`) in both namespaces drop every IPv4 packet in and out
   *   of `rep0`; the links stay up with carrier, so neither side learns of the
   *   partition except by silence, as with a failed switch between them.
   *   (This kernel has no tc classifier or netem to do it below IP.)
   * - `carrier`: both `rep0` ends go down, as with a pulled cable.
   *
   * Undo with {@link Testbed.healReplica}.
   */
  async partitionReplica(mode: 'silent' | 'carrier' = 'silent'): Promise<void> {
    this.live();
    if (mode === 'silent') await this.armPartition();
    // One process per host, both at once: the fault lands when the test asks
    // for it, not seconds later on a loaded machine (a dozen `ip netns exec
    // iptables` calls once took 3 s in CI, and the stream had ended).
    await Promise.all(
      (['primary', 'backup'] as const).map((role) =>
        mode === 'carrier'
          ? this.setLink(role, REPLICA_IF, false)
          : this.exec(role, 'iptables-restore', ['-w', '--noflush'], {
              input: `*filter\n:${PARTITION_CHAIN} - [0:0]\n-A ${PARTITION_CHAIN} -i ${REPLICA_IF} -j DROP\n-A ${PARTITION_CHAIN} -o ${REPLICA_IF} -j DROP\nCOMMIT\n`,
            }),
      ),
    );
  }

  /**
   * Puts an empty partition chain at the top of both replica hosts' INPUT
   * and OUTPUT, once, so that {@link Testbed.partitionReplica} only has to
   * fill it. Costs nothing until filled; call it before the traffic starts.
   */
  async armPartition(): Promise<void> {
    this.live();
    if (this.partitionArmed) return;
    await Promise.all(
      (['primary', 'backup'] as const).map(async (role) => {
        await this.exec(role, 'iptables', ['-w', '-N', PARTITION_CHAIN]).catch(() => undefined);
        for (const chain of ['INPUT', 'OUTPUT']) {
          // At the top, once, so no earlier ACCEPT lets packets by.
          const present = await this.exec(role, 'iptables', ['-w', '-C', chain, '-j', PARTITION_CHAIN]).then(
            () => true,
            () => false,
          );
          if (!present) await this.exec(role, 'iptables', ['-w', '-I', chain, '1', '-j', PARTITION_CHAIN]);
        }
      }),
    );
    this.partitionArmed = true;
  }

  /** Undoes {@link Testbed.partitionReplica} of either mode; a link that was not cut is left as it is. */
  async healReplica(): Promise<void> {
    this.live();
    await Promise.all(
      (['primary', 'backup'] as const).map(async (role) => {
        await this.exec(role, 'iptables', ['-w', '-F', PARTITION_CHAIN]).catch(() => undefined);
        if (!this.crashedHosts.has(role)) await this.setLink(role, REPLICA_IF, true);
      }),
    );
  }

  /**
   * Limits a host's LAN link with tbf: `upMbit` on what it sends, `downMbit`
   * on what it receives. Replaces earlier limits of the same direction.
   */
  async limitRate(role: HostRole, rate: LinkRate): Promise<void> {
    this.live();
    const latency = rate.latencyMs !== undefined ? { latencyMs: rate.latencyMs } : {};
    if (rate.upMbit !== undefined) await setTbf(this.ns(role), LAN_IF, { rateMbit: rate.upMbit, ...latency });
    if (rate.downMbit !== undefined) await setTbf(this.ns('lan'), this.host(role).bridgePort, { rateMbit: rate.downMbit, ...latency });
  }

  /** Removes both rate limits of a host's LAN link. */
  async clearRate(role: HostRole): Promise<void> {
    this.live();
    await clearQdisc(this.ns(role), LAN_IF);
    await clearQdisc(this.ns('lan'), this.host(role).bridgePort);
  }

  /**
   * Fail-stop crash of a host. First every interface but `lo` goes down: a
   * down device transmits nothing (the kernel drops at `__dev_queue_xmit`,
   * `packet_snd` refuses, the qdisc becomes noop), so the FIN or RST the
   * kernel sends when the processes die (RFC 9293 3.6: RST when unread data
   * is discarded) never leaves; its peers see carrier loss, as a switch port
   * of a powered-off machine would. Then every process in the namespace gets
   * SIGKILL until none is left. The namespace itself stays (deleted by
   * {@link Testbed.destroy}); a crashed primary's addresses are left as
   * they are.
   */
  async crash(role: HostRole): Promise<CrashReport> {
    this.live();
    const ns = this.ns(role);
    const cutInterfaces = (await nsLinks(ns)).map((l) => l.ifname).filter((n) => n !== 'lo');
    await Promise.all(cutInterfaces.map((dev) => ipIn(ns, ['link', 'set', 'dev', dev, 'down'])));
    const cutAt = Date.now();
    const killedPids = await nsKillAll(ns);
    const killedAt = Date.now();
    for (const pid of killedPids) this.killedPids.add(pid);
    this.crashedHosts.add(role);
    return { host: role, cutInterfaces, cutAt, killedPids, killedAt };
  }

  /**
   * Kills every process in every namespace of the bed, deletes the
   * namespaces (and with them every device), and removes capture files.
   * Idempotent: later calls return the first call's promise. Works on a bed
   * that is half built or has crashed hosts.
   */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      const errors: unknown[] = [];
      // Kill everywhere first: a process in one namespace may hold a socket or
      // device reference that keeps another alive.
      const killed = await Promise.all(this.created.map((ns) => nsKillAll(ns).catch((e: unknown) => (errors.push(e), []))));
      await Promise.all(this.procs.map((p) => p.stop('SIGKILL', 2000).catch((e: unknown) => errors.push(e))));
      for (const pid of [...killed.flat(), ...this.procs.map((p) => p.pid)]) this.killedPids.add(pid);
      removeNodeStateDirs(this.killedPids);
      for (const ns of [...this.created]) {
        try {
          await nsDelete(ns);
          this.created.splice(this.created.indexOf(ns), 1);
        } catch (e) {
          errors.push(e);
        }
      }
      this.removeCaptures();
      unregisterLive(this);
      if (errors.length > 0) {
        throw new TestbedError(TestbedErrorCode.COMMAND_FAILED, `destroying test bed ${this.tag}: ${errors.map(String).join('; ')}`, {
          cause: errors[0],
        });
      }
    })();
    return this.destroying;
  }

  /** {@link Testbed.destroy} without the event loop, for exit hooks. Never throws. */
  destroySync(): void {
    for (const ns of [...this.created]) nsDeleteSync(ns);
    this.created.length = 0;
    this.removeCaptures();
  }

  private removeCaptures(): void {
    if (this.captureDir === undefined || process.env['FTCP_E2E_KEEP_CAPTURES'] === '1') return;
    rmSync(this.captureDir, { recursive: true, force: true });
    this.captureDir = undefined;
  }
}
