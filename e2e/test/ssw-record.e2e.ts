import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FTCP_BIN as FTCP, SSW_RECORD_TOOL, STREAM_TOOL, Testbed, nextPort, type HostProcess } from '../src/index.js';
const MB = 1024 * 1024;
const TOTAL = 200 * MB;

interface Done {
  ev: 'done';
  bytes: number;
  sha256: string;
  ms: number;
}

/**
 * Client bytes the server side has acknowledged, from the client's `ss -ti`.
 * Linux's bytes_acked counts the SYN's sequence number too: take it off.
 */
async function clientBytesAcked(bed: Testbed, port: number): Promise<number> {
  const r = await bed.exec('client', 'ss', ['-tin', 'dst', `${bed.vip}:${port}`]);
  const m = /bytes_acked:(\d+)/.exec(r.stdout);
  return m ? Number(m[1]) - 1 : -1;
}

/** The latest stable offset the primary's wrap reported. */
function lastStable(ssw: HostProcess): number {
  const statuses = ssw.events().filter((e) => e.ev === 'status') as unknown as { stable: { stableOffset: number }[] }[];
  return statuses.at(-1)?.stable[0]?.stableOffset ?? -1;
}

describe('south-side wrap in record mode', function () {
  this.timeout(300_000);
  let bed: Testbed | undefined;
  let dataDir: string;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
    dataDir = mkdtempSync(join(tmpdir(), 'ftcp-e2e-buf-'));
  });
  afterEach(async () => {
    await bed?.destroy();
    bed = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  for (const ack of ['eager', 'hold'] as const) {
    it(`delivers 200 MB intact, acknowledges nothing while the buffer is frozen (three times along the stream), and finishes once it thaws (${ack})`, async () => {
      bed = await Testbed.create();
      // NFQUEUE copies at most 65531 bytes of a packet: keep GSO and GRO packets below that.
      await bed.ip('primary', ['link', 'set', 'lan0', 'gso_max_size', '32768', 'gro_max_size', '32768']);
      const bufPort = nextPort();
      const svcPort = nextPort();
      const endpoint = `tcp://${bed.host('backup').replicaAddr}:${bufPort}`;
      const buffer = bed.spawn('backup', FTCP, ['buffer', 'serve', '--listen', endpoint, '--data-dir', dataDir, '--durability', 'memory', '--log-level', 'warn']);
      await buffer.waitForLine((l) => l.includes('"ready"'), 15_000);
      const sink = bed.spawn('primary', process.execPath, [STREAM_TOOL, 'sink', '--bind', bed.vip, '--port', String(svcPort)]);
      await sink.waitForEvent('listening', 5000);
      const ssw = bed.spawn('primary', process.execPath, [SSW_RECORD_TOOL, '--vip', bed.vip, '--port', String(svcPort), '--buffer', endpoint, '--ack', ack, '--status-ms', '50']);
      await ssw.waitForEvent('ready', 15_000);

      const seed = Number(process.env.FTCP_E2E_SEED ?? Date.now() % 100_000);
      console.log(`      stream seed ${seed} (FTCP_E2E_SEED)`);
      const sender = bed.spawn('client', process.execPath, [STREAM_TOOL, 'send', '--host', bed.vip, '--port', String(svcPort), '--bytes', String(TOTAL), '--seed', String(seed), '--progress-mb', '8']);
      // Freeze the buffer three times along the stream: within a few round
      // trips the client's acknowledged bytes stop moving, and while nothing
      // becomes stable the comparison with what was logged is exact.
      const freezes: { acked: number; logged: number }[] = [];
      for (const atMb of [48, 112, 176]) {
        await sender.waitForLine((l) => /"ev":"progress"/.test(l) && Number(JSON.parse(l).sent) >= atMb * MB, 120_000);
        buffer.signal('SIGSTOP');
        await new Promise((r) => setTimeout(r, 300));
        const frozen: number[] = [];
        for (let i = 0; i < 10; i++) {
          frozen.push(await clientBytesAcked(bed, svcPort));
          await new Promise((r) => setTimeout(r, 50));
        }
        const stableWhileFrozen = lastStable(ssw);
        buffer.signal('SIGCONT');
        expect(new Set(frozen).size, `bytes_acked moved while the buffer was frozen at ${atMb} MB: ${frozen.join(', ')}`).to.equal(1);
        expect(frozen[0]).to.be.greaterThan(freezes.at(-1)?.acked ?? 0);
        // Invariant 1: the client never saw an ack for a byte the buffer had not logged.
        expect(frozen[0]!, `at ${atMb} MB`).to.be.at.most(stableWhileFrozen);
        freezes.push({ acked: frozen[0]!, logged: stableWhileFrozen });
      }

      const sent = await sender.waitForEvent<Done>('done', 240_000);
      const got = await sink.waitForEvent<Done>('done', 60_000);
      expect(sent.bytes).to.equal(TOTAL);
      expect(got.bytes).to.equal(TOTAL);
      expect(got.sha256).to.equal(sent.sha256);
      console.log(`      200 MB in ${(sent.ms / 1000).toFixed(1)} s through the wrap; frozen three times, acked / logged: ${freezes.map((f) => `${f.acked} / ${f.logged}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
      ssw.signal('SIGTERM');
      await ssw.waitForEvent('stopped', 10_000);
      const final = ssw.events().filter((e) => e.ev === 'status').at(-1) as unknown as { stable: { stableOffset: number }[]; recorder: { logFailures: number }; wrap: { outgoing: number } };
      // Every byte and the FIN were logged.
      expect(final.stable[0]!.stableOffset).to.equal(TOTAL + 1);
      // hold: the server's segments left without the queue, but for its SYN, FIN or RST.
      if (ack === 'hold') expect(final.wrap.outgoing).to.be.below(10);
      const rules = await bed.exec('primary', 'iptables-save', ['-t', 'mangle']);
      expect(rules.stdout).to.not.match(/FTCP-/);
    });
  }
});
