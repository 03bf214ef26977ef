/**
 * Issue 5: "a partition of the replica link makes the primary step down
 * and the backup take over, and at no moment do both speak (checked from a
 * capture in the client's namespace)". The replica link goes silent at a
 * seeded random point of a 20 MB echo stream; the buffer, on the backup's
 * end, loses the primary and the hot backup takes over. Once it has, the
 * link is healed: the old primary reaches the buffer again, learns it was
 * fenced (a newer epoch) and exits 4. The capture runs until it has.
 */
import { expect } from 'chai';
import { echoScenario, runScenario } from '../src/index.js';
import { expectClientIntact, expectNoFalseDetection, logSummary, why } from './failover-checks.js';

const MiB = 1024 * 1024;

describe('a partition of the replica link, with a hot backup', function () {
  this.timeout(120_000);

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
  });

  // hold: the server's segments leave without the queue, so a drop rule, not the wrap, mutes the old primary.
  for (const ack of [undefined, 'hold'] as const) {
    it(`moves the echo stream to the backup intact with one speaker at a time, and the fenced old primary exits 4 once healed without a segment reaching the client${ack ? ` (primary --ack ${ack})` : ''}`, async () => {
      const r = await runScenario(echoScenario({ bytes: 20 * MiB, rateMbit: 40, clientTimeoutMs: 30_000 }), {
        mode: 'hot',
        fault: 'partition-replica',
        faultWindow: [0.2, 0.5],
        healAfterMs: 300,
        ...(ack ? { ack } : {}),
      });
      logSummary(r);
      const w = why(r);
      // The takeover is the partition's, not a false detection before it.
      expectNoFalseDetection(r);
      expectClientIntact(r);
      expect(r.takeover.promoted, `the backup was not promoted${w}`).to.not.equal(undefined);
      expect(r.partition?.healedAt, `the link was not healed${w}`).to.not.equal(undefined);
      // The heal came while the old primary was still around to misbehave.
      expect(r.partition!.primaryExitedBeforeHeal, `the old primary exited before the heal${w}`).to.equal(false);
      expect(r.partition!.primaryExit, `how the old primary exited${w}`).to.deep.equal({ code: 4, signal: null });
      const cap = r.capture!;
      expect(cap.serverRsts, `RST from the VIP${w}`).to.have.length(0);
      expect(cap.serverFinsBeforeClientFin, `FIN from the VIP before the client closed${w}`).to.have.length(0);
      // One MAC per time: after the partition, the primary's segments (if any) all come before the backup's first,
      // and over the whole capture (which lasts past the old primary's exit) no host speaks again once the other has.
      const after = r.speakersAfterFault;
      const primary = after.find((s) => s.host === 'primary');
      const backup = after.find((s) => s.host === 'backup');
      expect(backup, `the backup never spoke${w}`).to.not.equal(undefined);
      if (primary !== undefined) expect(primary.last, `the old primary spoke after the backup's first segment${w}`).to.be.lessThan(backup!.first);
      expect(cap.speakerRuns.map((s) => s.host ?? s.mac), `who spoke for the VIP, by runs of segments${w}`).to.deep.equal(['primary', 'backup']);
    });
  }
});
