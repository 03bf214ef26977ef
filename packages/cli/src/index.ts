/** @ftcp/cli: the `ftcp` command. Commands live in ./commands, one file per command id. */
export { ExitCode, parseSize } from './flags.js';
