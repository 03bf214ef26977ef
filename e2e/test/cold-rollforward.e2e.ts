/**
 * Issue 5: "keep clients from timing out during a long cold roll-forward
 * with zero-window ACKs" (FT-TCP 2.3.1; DESIGN.md "Failover, in order",
 * step 6). A cold backup starts its replica only at the failure and replays
 * the whole log: here about 100 MiB of upload into a server that computes
 * on every byte, several seconds of work. The client's host gives up on a
 * silent peer after about 3 s (`tcp_retries2 = 2`; see retries2GiveUpMs),
 * far sooner than Linux's default 15 minutes. The backup moves the VIP
 * early in its takeover and then holds the client with zero-window ACKs
 * until the replica has rolled forward and the connection is rebuilt; the
 * client must see no error and the server must read every byte.
 *
 * `FTCP_E2E_DROP_ZERO_WINDOW_ACKS=1` drops the VIP's zero-window segments
 * in the client's host before its TCP sees them: the negative control; the
 * test must then fail with the client's ETIMEDOUT.
 */
import { expect } from 'chai';
import {
  retries2GiveUpMs,
  retries2TimeoutMs,
  uploadDigestScenario,
  type ZeroWindowSegment,
} from '../src/cold-rollforward.js';
import { runScenario } from '../src/index.js';
import { expectMaskedCrash, expectNoFalseDetection, logSummary, why } from './failover-checks.js';

const MiB = 1024 * 1024;
/** The upload; the crash at 70-80% of it leaves a log of about 100 MiB. */
const BYTES = 140 * MiB;
/** Below what the working server takes, so the client is retransmitting at the crash, not probing a zero window. */
const RATE_MBIT = 80;
/** About 37 ms of sha256 per MiB on the primary, and again on the replica during its roll-forward. */
const SERVER_WORK_PASSES = 50;
const CLIENT_TCP_RETRIES2 = 2;

describe('ftcp backup --mode cold with a roll-forward longer than the client would wait', function () {
  this.timeout(90_000);

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
  });

  it('holds a client whose TCP gives up after 3 s with zero-window ACKs through a takeover of several seconds: no client error, every byte read by the server (sha256)', async () => {
    const drop = process.env['FTCP_E2E_DROP_ZERO_WINDOW_ACKS'] === '1';
    const r = await runScenario(
      uploadDigestScenario({ bytes: BYTES, rateMbit: RATE_MBIT, serverWorkPasses: SERVER_WORK_PASSES, clientTcpRetries2: CLIENT_TCP_RETRIES2, dropZeroWindowAcks: drop }),
      { mode: 'cold', fault: 'crash-primary', faultWindow: [0.7, 0.8] },
    );
    logSummary(r);
    const w = why(r);
    expectNoFalseDetection(r);

    const giveUpMs = retries2GiveUpMs(CLIENT_TCP_RETRIES2);
    const crashAt = r.crash?.cutAt;
    const done = r.takeover.complete;
    const zw = (r.verdict?.facts['zeroWindowSegments'] ?? []) as ZeroWindowSegment[];
    const held = crashAt === undefined || r.takeover.takeoverComplete === undefined ? [] : zw.filter((s) => s.t >= crashAt && s.t <= r.takeover.takeoverComplete! + 5);
    const at = (t: number | undefined): string => (t === undefined || crashAt === undefined ? '-' : `${(t - crashAt).toFixed(0)} ms`);
    console.log(
      `      client: tcp_retries2=${CLIENT_TCP_RETRIES2} (gives up ${retries2TimeoutMs(CLIENT_TCP_RETRIES2)} ms after its first retransmission, ${giveUpMs} ms after its last answered segment at the earliest)` +
        `${drop ? '; zero-window ACKs DROPPED in the client host (negative control)' : ''}\n` +
        `      takeover after the crash: vip-moved ${at(r.takeover.vipMoved)}, takeover-complete ${at(r.takeover.takeoverComplete)}; ` +
        `backup timeline from failure-detected: log fetched ${String(done?.['fetchedMs'])} ms (${((Number(done?.['logBytes']) || 0) / MiB).toFixed(1)} MiB, ${String(done?.['records'])} records), ` +
        `vip ${String(done?.['vipMs'])} ms, rolled forward ${String(done?.['rolledForwardMs'])} ms, rebuilt ${String(done?.['ms'])} ms\n` +
        `      zero-window segments from the VIP during the takeover: ${held.length} (${held.map((s) => `${s.host ?? '?'} ${at(s.t)}`).join(', ')})`,
    );

    expectMaskedCrash(r);

    // The claim: the roll-forward outlasted what the client would have waited for on its own.
    expect(done, `no takeover-complete timeline from the backup${w}`).to.not.equal(undefined);
    const heldMs = Number(done!['ms']) - Number(done!['vipMs']);
    expect(heldMs, `the backup held the connection (vip-moved to rebuilt) for less than the client's ${giveUpMs} ms: the roll-forward was too short to test anything${w}`).to.be.greaterThan(giveUpMs);
    expect(r.takeover.takeoverComplete! - crashAt!, w).to.be.greaterThan(giveUpMs);
    expect(Number(done!['rolledForwardMs']) - Number(done!['vipMs']), `the replay after the VIP moved${w}`).to.be.greaterThan(retries2TimeoutMs(CLIENT_TCP_RETRIES2));

    // What held it: zero-window ACKs from the backup's MAC, the first before the client would have given up, until the rebuild.
    expect(held.length, `zero-window segments from the VIP between the crash and takeover-complete${w}`).to.be.at.least(2);
    expect(held.filter((s) => s.host !== 'backup'), `zero-window segments during the takeover from a host other than the backup${w}`).to.deep.equal([]);
    expect(held[0]!.t - crashAt!, `the first zero-window ACK came after the client would have given up${w}`).to.be.lessThan(giveUpMs);
    expect(held.at(-1)!.t, `the zero-window ACKs stopped long before the rebuild${w}`).to.be.greaterThan(r.takeover.takeoverComplete! - giveUpMs);
  });
});
