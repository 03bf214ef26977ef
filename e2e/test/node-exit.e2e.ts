/**
 * Issue 5: a node stopped by its operator leaves its host as it found it.
 * A real buffer (on the spare, so the nodes' hosts hold only the node and
 * its server), `ftcp primary` and a hot `ftcp backup` with an unmodified
 * echo server, one client connection echoed through them; then each node
 * gets SIGTERM or SIGINT and must exit 0 leaving in its namespace no FTCP
 * chain or NFQUEUE rule, no VIP, no process (the server and every child it
 * started included), and no state directory. The backup is stopped first:
 * a primary stopped first would be declared failed by the buffer and the
 * backup would take over. A step-down (exit 4) keeps its rules on purpose
 * (see reign.ts) and is not this test's.
 */
import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ECHOD_BIN, FTCP_BIN, Testbed, nextPort, nsPids, startPeer, type ExitStatus, type HostProcess, type HostRole } from '../src/index.js';
import { allLines, sleep, waitForAnyLine } from '../src/harness.js';

/** Long enough that a loaded host never has the buffer declare a live primary failed during the test. */
const FAILURE_TIMEOUT_MS = 1000;

/** What a node's host holds while it runs, read before the signal. */
interface Running {
  readonly stateDir: string;
  /** Pids in the host's namespace other than the node's own: the server and its children. */
  readonly serverPids: readonly number[];
}

interface ServerCase {
  readonly what: string;
  readonly command: (vip: string, port: number) => string[];
  /** Processes the server is made of while it runs (a shell's child too). */
  readonly processes: number;
  readonly signal: NodeJS.Signals;
}

const CASES: readonly ServerCase[] = [
  { what: 'SIGTERM, serving echod', command: (vip, port) => [ECHOD_BIN, vip, String(port), '-v'], processes: 1, signal: 'SIGTERM' },
  {
    what: "SIGINT, serving echod from a shell that leaves a child running (sh -c 'sleep 1000 & exec echod')",
    command: (vip, port) => ['sh', '-c', `sleep 1000 & exec ${ECHOD_BIN} ${vip} ${port} -v`],
    processes: 2,
    signal: 'SIGINT',
  },
];

describe('ftcp primary and ftcp backup stopped by a signal', function () {
  this.timeout(60_000);
  let bed: Testbed | undefined;
  let dataDir: string;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
    dataDir = mkdtempSync(join(tmpdir(), 'ftcp-e2e-node-exit-'));
  });
  afterEach(async () => {
    await bed?.destroy();
    bed = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** The node's state directory (state-dir.ts: `<tmp>/ftcp-<role>-XXXXXX` naming its owner's pid). */
  function stateDirOf(pid: number): string | undefined {
    for (const name of readdirSync(tmpdir())) {
      if (!/^ftcp-(primary|backup)-/.test(name)) continue;
      try {
        if (readFileSync(join(tmpdir(), name, 'owner.pid'), 'utf8').trim() === String(pid)) return join(tmpdir(), name);
      } catch {
        // Not a node's directory, or one going away.
      }
    }
    return undefined;
  }

  /** How the process ended, or undefined if it still runs after `ms`. */
  function exitOf(p: HostProcess, ms: number): Promise<ExitStatus | undefined> {
    const c = p.child;
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve({ code: c.exitCode, signal: c.signalCode });
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(undefined), ms);
      c.once('exit', (code, signal) => {
        clearTimeout(t);
        resolve({ code, signal });
      });
    });
  }

  function logsOf(p: HostProcess): string {
    return `\n--- ${p.commandLine} on ${p.host}\n${allLines(p).slice(-40).join('\n')}`;
  }

  /** FTCP chains and NFQUEUE rules in a host's iptables, one per line. */
  async function ftcpRules(b: Testbed, role: HostRole): Promise<string[]> {
    const out = (await b.exec(role, 'iptables-save', [])).stdout;
    return out.split('\n').filter((l) => l.includes('FTCP-') || l.includes('NFQUEUE'));
  }

  async function vipHeld(b: Testbed, role: HostRole): Promise<boolean> {
    return (await b.exec(role, 'ip', ['-o', '-4', 'addr', 'show'])).stdout.includes(` ${b.vip}/`);
  }

  /** What the node holds on its host while it runs: proof that the checks after the signal see what they look for. */
  async function running(b: Testbed, role: HostRole, node: HostProcess, c: ServerCase): Promise<Running> {
    const w = logsOf(node);
    const stateDir = stateDirOf(node.pid);
    expect(stateDir, `${role}'s state directory while it runs${w}`).to.not.equal(undefined);
    expect((await ftcpRules(b, role)).some((l) => l.includes('NFQUEUE')), `${role}'s NFQUEUE rule while it runs${w}`).to.equal(true);
    const serverPids = (await nsPids(b.ns(role))).filter((p) => p !== node.pid);
    expect(serverPids, `${role}'s server processes while it runs${w}`).to.have.length(c.processes);
    return { stateDir: stateDir!, serverPids };
  }

  /** Signals the node and checks it exited 0 and took everything of its own from its host. */
  async function stopAndCheck(b: Testbed, role: HostRole, node: HostProcess, before: Running, sig: NodeJS.Signals): Promise<number> {
    const t0 = Date.now();
    node.signal(sig);
    // The process's own exit, not the end of its output: an orphan of its server would hold that open.
    const exit = await exitOf(node, 15_000);
    const ms = Date.now() - t0;
    const w = logsOf(node);
    expect(exit, `${role} did not exit within 15 s of ${sig}${w}`).to.not.equal(undefined);
    expect(exit, `how ${role} exited on ${sig}${w}`).to.deep.equal({ code: 0, signal: null });
    expect(await ftcpRules(b, role), `FTCP chains and NFQUEUE rules left on ${role}${w}`).to.deep.equal([]);
    // Every process of the host was the node's: the server and its children must be gone with it (orphans stay in the namespace).
    const left = await nsPids(b.ns(role));
    expect(left, `processes left on ${role} (the server's were ${before.serverPids.join(', ')})${w}`).to.deep.equal([]);
    expect(stateDirOf(node.pid), `${role}'s state directory ${before.stateDir} left${w}`).to.equal(undefined);
    // No address without its service (as a backup that took the VIP gives it back): once the buffer declares a stopped
    // primary failed, a backup takes the VIP, and this host must not answer for it with RSTs.
    expect(await vipHeld(b, role), `the VIP left on ${role}${w}`).to.equal(false);
    return ms;
  }

  for (const c of CASES) {
    it(`each exit 0 on ${c.what}, leaving no FTCP rule, VIP, server process or state directory on its host`, async () => {
      const b = await Testbed.create({ spare: true });
      bed = b;
      const endpoint = `tcp://${b.host('spare').replicaNetAddr!}:${nextPort()}`;
      const port = nextPort();
      const service = `${b.vip}:${port}`;
      const buffer = b.spawn('spare', FTCP_BIN, [
        'buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory',
        '--probe-interval', '50', '--failure-timeout', String(FAILURE_TIMEOUT_MS), '--log-level', 'warn',
      ]);
      await waitForAnyLine(buffer, (l) => l.includes('"ready"'), 15_000, 'buffer ready');
      const node = (role: HostRole, name: string, args: string[]): HostProcess =>
        b.spawn(role, FTCP_BIN, [
          ...args, '--service', service, '--buffer', endpoint, '--iface', 'lan0', '--node', name,
          '--failure-timeout', String(FAILURE_TIMEOUT_MS), '--log-level', 'warn', '--', ...c.command(b.vip, port),
        ]);
      const primary = node('primary', 'primary-a', ['primary']);
      await waitForAnyLine(primary, (l) => l.includes('"ready"'), 20_000, 'primary ready');
      await waitForAnyLine(primary, (l) => l.includes('"listening"'), 10_000, "the primary's echod listening");
      const backup = node('backup', 'backup-b', ['backup', '--mode', 'hot']);
      await waitForAnyLine(backup, (l) => l.includes('"ready"'), 20_000, 'backup ready');
      await waitForAnyLine(backup, (l) => l.includes('"listening"'), 10_000, "the backup's echod listening");

      // One connection, echoed: the primary wrapped it and the hot backup's replica follows it. It stays open.
      const client = startPeer(b, 'client', ['connect', '--host', b.vip, '--port', String(port), '--mode', 'interactive']);
      await client.waitForEvent('connected', 5000);
      client.writeLine('send 1000');
      for (let i = 0; i < 100 && !client.events().some((e) => e.ev === 'data' && Number(e['total']) >= 1000); i++) await sleep(50);
      expect(client.events().some((e) => e.ev === 'data' && Number(e['total']) >= 1000), `the echo of 1000 bytes${logsOf(client)}${logsOf(primary)}`).to.equal(true);
      // The hot backup's replica holds it too (its report to the buffer, every 500 ms).
      let replicated = 0;
      for (let i = 0; i < 40 && replicated < 1; i++) {
        const status = JSON.parse((await b.exec('spare', FTCP_BIN, ['status', '--json', '--buffer', endpoint])).stdout) as { nodes: { node: string; report: Record<string, unknown> }[] };
        replicated = Number(status.nodes.find((n) => n.node === 'backup-b')?.report['connections'] ?? 0);
        if (replicated < 1) await sleep(250);
      }
      expect(replicated, `connections the hot backup replicates${logsOf(backup)}`).to.equal(1);

      const backupRunning = await running(b, 'backup', backup, c);
      const primaryRunning = await running(b, 'primary', primary, c);
      const backupMs = await stopAndCheck(b, 'backup', backup, backupRunning, c.signal);
      const primaryMs = await stopAndCheck(b, 'primary', primary, primaryRunning, c.signal);
      console.log(`      ${c.signal}: backup exited in ${backupMs} ms, primary in ${primaryMs} ms`);
    });
  }
});
