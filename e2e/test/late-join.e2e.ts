/**
 * Issue 5: "A backup started after the primary catches up from the log and
 * then follows." The primary runs alone while a 20 MB echo stream is well
 * under way; at a seeded 30-40% of it the backup starts. Nothing is
 * collected from the log before a backup registers, so the late backup
 * replays the server from LSN 0: a hot one catches up (it consumed every
 * record and played every call the log held when it was ready, read from
 * the buffer's status), a cold one simply registers. Then, later in the
 * same stream (60-85%), the primary host dies fail-stop, and the late
 * backup must mask it like one that was there from the start.
 */
import { expect } from 'chai';
import { echoScenario, runScenario, type BackupMode } from '../src/index.js';
import { expectMaskedCrash, expectNoFalseDetection, logSummary, why } from './failover-checks.js';

const MiB = 1024 * 1024;

for (const mode of ['hot', 'cold'] as const satisfies readonly BackupMode[]) {
  describe(`ftcp backup --mode ${mode} started after the primary`, function () {
    this.timeout(120_000);

    beforeEach(function () {
      if (process.getuid?.() !== 0) this.skip();
    });

    it('catches up from the log and masks a fail-stop crash of the primary later in the same 20 MB echo stream: intact both ways, no RST, no early FIN, one speaker at a time', async () => {
      // 20 Mbit/s: about 8.4 s of stream, room for the late start, the catch-up and a crash after it.
      const r = await runScenario(echoScenario({ bytes: 20 * MiB, rateMbit: 20, clientTimeoutMs: 40_000 }), {
        mode,
        fault: 'crash-primary',
        backupJoinWindow: [0.3, 0.4],
        faultWindow: [0.6, 0.85],
      });
      logSummary(r);
      expectNoFalseDetection(r);
      const w = why(r);
      const join = r.backupJoin;
      expect(join, `the backup was not started late${w}`).to.not.equal(undefined);
      expect(join!.caughtUpAt, `the late backup never ${mode === 'hot' ? 'caught up' : 'registered'}${w}`).to.not.equal(undefined);
      // It joined mid-stream, and caught up before the crash it then masked.
      expect(join!.headLsnAtJoin, `the log was empty when the backup joined${w}`).to.be.greaterThan(0);
      expect(r.crash?.cutAt, `the crash came before the late backup caught up${w}`).to.be.greaterThan(join!.caughtUpAt!);
      expectMaskedCrash(r);
    });
  });
}
