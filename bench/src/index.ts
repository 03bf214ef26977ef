export const BENCH = true;
