/** Package version, for status output and compatibility checks. */
export const VERSION = '0.1.0';
