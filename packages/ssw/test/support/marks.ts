/** Firewall marks shared by the NFQUEUE test and its namespace harness. */

/** Mark the harness's verdicts put on accepted packets; a rule counts them. */
export const VERDICT_MARK = 0x42;
/** Mark of injected packets; the queue rules skip it, a rule counts it. */
export const INJECT_MARK = 0x99;
