import { expect } from 'chai';
import { describeReport, reportLogs, runFailover, type BackupMode } from '../src/index.js';
import { expectEchoIntact, expectNoFalseDetection } from './failover-checks.js';

const MiB = 1024 * 1024;
const BYTES = 20 * MiB;
/** The client's pace: 20 MiB takes about 4 s at 40 Mbit/s. `FTCP_E2E_RATE_MBIT` overrides it. */
const RATE_MBIT = Number(process.env['FTCP_E2E_RATE_MBIT'] ?? 40);

for (const mode of ['hot', 'cold'] as const satisfies readonly BackupMode[]) {
  describe(`ftcp backup --mode ${mode}`, function () {
    this.timeout(150_000);

    beforeEach(function () {
      if (process.getuid?.() !== 0) this.skip();
    });

    for (const ack of [undefined, 'hold'] as const) {
      it(`keeps a 20 MB echo stream intact both ways, with no RST and no early FIN, when the primary host dies mid-transfer${ack ? ` (primary --ack ${ack})` : ''}`, async () => {
        // Paced, so the crash (at 20-80% of the stream) lands mid-stream.
        const r = await runFailover({ mode, bytes: BYTES, rateMbit: RATE_MBIT, ...(ack ? { ack } : {}) });
        const why = `\n${describeReport(r, { verbose: true })}\n${reportLogs(r)}`;
        console.log(
          `      seed ${r.seed}: client-visible gap ${r.gapMs?.toFixed(1) ?? '-'} ms (across the crash ${r.crashGapMs?.toFixed(1) ?? '-'} ms), resumed ${r.resumedAfterCrashMs?.toFixed(1) ?? '-'} ms after the crash, ` +
            `run ${r.clientMs?.toFixed(0) ?? '-'} ms`,
        );
        console.log(describeReport(r).replace(/^/gm, '      '));

        // A takeover before the crash (load on this host) would pass the checks below when it crashes a primary already quiet.
        expectNoFalseDetection(r);
        expect(r.crash, `the primary was not crashed${why}`).to.not.equal(undefined);
        expectEchoIntact(r, BYTES);
        // The crash came before the client had everything back: it really was mid-stream.
        expect(r.client!.lastByteAt, why).to.be.greaterThan(r.crash!.cutAt);

        const cap = r.capture!;
        // One speaker at a time (DESIGN invariant 4): the backup speaks only after the primary's last segment.
        const primary = cap.speakers.find((s) => s.host === 'primary');
        const backup = cap.speakers.find((s) => s.host === 'backup');
        expect(backup, `the backup never spoke for the VIP${why}`).to.not.equal(undefined);
        if (primary !== undefined) expect(backup!.first, why).to.be.greaterThan(primary.last);
      });
    }
  });
}
