/**
 * The checks every failover test makes of a {@link ScenarioReport}, so that
 * each spec states only what is particular to it. Each check fails with the
 * whole report and the processes' logs in its message.
 */
import { expect } from 'chai';
import { describeReport, describeScenario, reportLogs, scenarioLogs, speakerOrder, type FailoverReport, type ScenarioReport } from '../src/index.js';

/** The report and the last lines of every process's output, for failure messages. */
export function why(r: ScenarioReport): string {
  return `\n${describeScenario(r, { verbose: true })}\n${scenarioLogs(r)}`;
}

/** Prints the report's summary under the test's name. */
export function logSummary(r: ScenarioReport): void {
  console.log(describeScenario(r).replace(/^/gm, '      '));
}

/** The harness did its part and the client and the checker saw everything right. */
export function expectClientIntact(r: ScenarioReport): void {
  const w = why(r);
  expect(r.harnessError, `harness${w}`).to.equal(undefined);
  expect(r.verdict?.problems, `the client's checks${w}`).to.deep.equal([]);
}

/**
 * A crash of the primary host mid-run that the backup masked: the client
 * and checker are satisfied, the crash came before the client ended, the
 * backup took over, no RST reached the client (nor a FIN before the
 * client's own, unless the server closes first in this protocol), and the
 * VIP spoke with one MAC at a time: the primary's, then the backup's.
 * `serverResetsAtClose`: the server closed a socket with client bytes
 * unread, which Linux answers with a RST instead of a FIN (RFC 2525 2.17),
 * so its RSTs are its own; the client's checks still judge what it got.
 * The takeover is the crash's: a false detection before it fails first (see
 * {@link expectNoFalseDetection}), since a takeover followed by a crash of
 * an already quiet primary would pass every check below.
 */
export function expectMaskedCrash(r: ScenarioReport, opts: { serverClosesFirst?: boolean; serverResetsAtClose?: boolean } = {}): void {
  const w = why(r);
  expectNoFalseDetection(r);
  expect(r.crash, `the primary was not crashed${w}`).to.not.equal(undefined);
  expectClientIntact(r);
  expect(r.client?.endedAt, `the client ended before the crash${w}`).to.be.greaterThan(r.crash!.cutAt);
  expect(r.takeover.takeoverComplete, `no takeover-complete from the backup${w}`).to.not.equal(undefined);
  const cap = r.capture!;
  if (opts.serverResetsAtClose !== true) expect(cap.serverRsts, `RST from the VIP${w}`).to.have.length(0);
  if (opts.serverClosesFirst !== true) expect(cap.serverFinsBeforeClientFin, `FIN from the VIP before the client closed${w}`).to.have.length(0);
  expect(speakerOrder(r), `who spoke for the VIP, by runs of segments${w}`).to.deep.equal(['primary', 'backup']);
}

/**
 * The backup took over only after the fault: a takeover before it (a false
 * detection: on a loaded host a 30 ms failure timeout can run out on a live
 * primary) means the run did not test what it set out to. A verdict of the
 * buffer that no backup acted on (retracted when the primary spoke again) is
 * only in the report. The fault of an echo run ({@link runFailover}) is its
 * crash.
 */
export function expectNoFalseDetection(r: ScenarioReport | FailoverReport): void {
  const took = r.takeover.failureDetected;
  if (took === undefined) return;
  const faultAt = 'faultAt' in r ? r.faultAt : r.crash?.cutAt;
  const when = faultAt === undefined ? 'with no fault injected yet' : `${(faultAt - took).toFixed(0)} ms before the fault`;
  const w = 'faultAt' in r ? why(r) : whyEcho(r);
  expect(took, `FALSE DETECTION: the backup took over ${when} (load on this host; not the behaviour under test)${w}`).to.be.at.least(faultAt ?? Infinity);
}

/** {@link why} for an echo run. */
export function whyEcho(r: FailoverReport): string {
  return `\n${describeReport(r, { verbose: true })}\n${reportLogs(r)}`;
}

/**
 * The echo stream (runFailover) came back whole: no harness or client error,
 * every byte both ways with matching sha256, and no RST or early FIN from the
 * VIP.
 */
export function expectEchoIntact(r: FailoverReport, bytes: number): void {
  const w = whyEcho(r);
  expect(r.harnessError, w).to.equal(undefined);
  expect(r.clientError, w).to.equal(undefined);
  expect(r.client, `the client did not finish${w}`).to.not.equal(undefined);
  const c = r.client!;
  expect(c.ok, w).to.equal(true);
  expect(c.sent, w).to.equal(bytes);
  expect(c.received, w).to.equal(bytes);
  expect(c.sha256Received, w).to.equal(c.sha256Sent);
  expect(c.mismatchAt, w).to.equal(null);
  expect(r.capture?.serverRsts, `RST from the VIP${w}`).to.have.length(0);
  expect(r.capture?.serverFinsBeforeClientFin, `FIN from the VIP before the client closed${w}`).to.have.length(0);
}
