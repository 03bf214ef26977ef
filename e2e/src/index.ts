export const TESTBED = true;
