/** Firewall marks shared by the NFQUEUE test and its namespace harness. */

/** Mark the harness's verdicts put on accepted packets; a rule counts them. */
export const VERDICT_MARK = 0x42;
/** Mark of injected packets; the queue rules skip it, a rule counts it. */
export const INJECT_MARK = 0x99;

/** The connection the adoption harness's old primary logged, as the test's client must address it. */
export const ADOPT_CONN_ID = 77;
export const ADOPT_CLIENT_ISN = 0x10000;
export const ADOPT_SERVER_ISN = 0x20000;
