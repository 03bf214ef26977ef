/**
 * Issue 5's end-to-end tests 2-5: real, unmodified servers under `ftcp
 * primary` and `ftcp backup --mode hot|cold`, the primary host crashed
 * fail-stop at a seeded random point of the client's run (the seed is
 * printed; `FTCP_E2E_SEED=<seed>` replays it), and the client checking
 * everything. Test 1 (the echo server) is failover.e2e.ts.
 */
import { httpScenario, iperfScenario, redisScenario, runScenario, tlsScenario, type BackupMode, type Scenario, type ScenarioReport } from '../src/index.js';
import { expectMaskedCrash, logSummary } from './failover-checks.js';

interface Case {
  /** What the test says the client keeps, completing "keeps ...". */
  readonly keeps: string;
  readonly scenario: () => Scenario;
  /** The server closes the connection first in a clean run (an HTTP/1.0 response, iperf3's end). */
  readonly serverClosesFirst: boolean;
  /**
   * The run shows the server closed with client bytes unread (so a RST from
   * it is its own abortive close, not the takeover's): iperf3's server
   * stops reading at the end of a test, and when its report counts fewer
   * bytes received than sent, the rest were in its socket at close.
   */
  readonly closedWithBytesUnread?: (r: ScenarioReport) => boolean;
}

const CASES: readonly Case[] = [
  {
    keeps: 'a 200 MB download from `python3 -m http.server` to curl intact (curl exits 0, sha256 matches)',
    scenario: () => httpScenario({ server: 'module' }),
    serverClosesFirst: true,
  },
  {
    keeps: 'a 200 MB download from a single-threaded python http.server (HTTPServer, no handler threads) to curl intact',
    scenario: () => httpScenario({ server: 'plain' }),
    serverClosesFirst: true,
  },
  {
    keeps: "redis-server's state: 20 000 pipelined INCR on one connection each answered with the previous reply plus one, then GET 20 000",
    scenario: () => redisScenario(),
    serverClosesFirst: false,
  },
  {
    keeps: 'a 50 MB TLS stream from `openssl s_server -WWW` intact (length, sha256, and no bad record MAC: the encryption state survived)',
    scenario: () => tlsScenario(),
    serverClosesFirst: true,
  },
  {
    keeps: 'an iperf3 upload going to a clean end (exit 0, no error in its JSON)',
    scenario: () => iperfScenario(),
    serverClosesFirst: true,
    closedWithBytesUnread: (r) => {
      const sent = r.verdict?.facts['sent'];
      const received = r.verdict?.facts['received'];
      return typeof sent === 'number' && typeof received === 'number' && received < sent;
    },
  },
];

for (const mode of ['hot', 'cold'] as const satisfies readonly BackupMode[]) {
  describe(`ftcp backup --mode ${mode} with real servers`, function () {
    this.timeout(120_000);

    beforeEach(function () {
      if (process.getuid?.() !== 0) this.skip();
    });

    for (const c of CASES) {
      it(`keeps ${c.keeps} when the primary host dies mid-run`, async () => {
        const r = await runScenario(c.scenario(), { mode, fault: 'crash-primary' });
        logSummary(r);
        expectMaskedCrash(r, { serverClosesFirst: c.serverClosesFirst, serverResetsAtClose: c.closedWithBytesUnread?.(r) ?? false });
      });
    }
  });
}
