/**
 * Issue 5: "the buffer process is killed and restarted during a transfer
 * with no crash of the primary: the client notices nothing but a pause".
 * The buffer runs with `--durability commit`, so what it acknowledged
 * survives its SIGKILL; it is restarted at once on the same data directory
 * and endpoint, at a seeded random point of a 20 MB echo stream.
 */
import { expect } from 'chai';
import { echoScenario, runScenario, speakerOrder, type BackupMode } from '../src/index.js';
import { expectClientIntact, logSummary, why } from './failover-checks.js';

const MiB = 1024 * 1024;

for (const mode of ['hot', 'cold'] as const satisfies readonly BackupMode[]) {
  describe(`a stable buffer killed and restarted mid-transfer, with a ${mode} backup`, function () {
    this.timeout(120_000);

    beforeEach(function () {
      if (process.getuid?.() !== 0) this.skip();
    });

    // hold: the quiet primary's output is muted by a drop rule, which must leave its own link to the buffer alone.
    for (const ack of [undefined, 'hold'] as const) {
      it(`only pauses the echo stream: every byte intact, the primary still serving a new connection, the backup still a backup${ack ? ` (primary --ack ${ack})` : ''}`, async () => {
        const r = await runScenario(echoScenario({ bytes: 20 * MiB, rateMbit: 40, clientTimeoutMs: 30_000, followUpBytes: MiB }), {
          mode,
          fault: 'restart-buffer',
          durability: 'commit',
          faultWindow: [0.2, 0.5],
          ...(ack ? { ack } : {}),
        });
        logSummary(r);
        const w = why(r);
        expect(r.bufferRestart?.readyAt, `the buffer was not restarted${w}`).to.not.equal(undefined);
        // The client's stream and the follow-up connection after it.
        expectClientIntact(r);
        const t = r.takeover;
        // The primary paused (quiet, then resumed at the same epoch) or did not notice; it never stepped down.
        expect(t.primarySteppedDown, `the primary stepped down${w}`).to.equal(undefined);
        if (t.primaryQuiet !== undefined) expect(t.primaryResumed, `the primary went quiet and never resumed${w}`).to.not.equal(undefined);
        expect(r.exits['primary'], `the primary exited${w}`).to.equal(null);
        // No takeover: the backup neither heard of a failure nor was promoted, and it still runs.
        expect(t.failureDetected, `the backup was told the primary failed${w}`).to.equal(undefined);
        expect(t.promoted, `the backup was promoted${w}`).to.equal(undefined);
        expect(r.exits['backup'], `the backup exited${w}`).to.equal(null);
        const cap = r.capture!;
        expect(cap.serverRsts, `RST from the VIP${w}`).to.have.length(0);
        expect(cap.serverFinsBeforeClientFin, `FIN from the VIP before the client closed${w}`).to.have.length(0);
        expect(speakerOrder(r), `who spoke for the VIP${w}`).to.deep.equal(['primary']);
      });
    }
  });
}
