/**
 * The ZeroMQ endpoints ftcp takes from people (`--listen`, `--buffer`),
 * checked in one place so that a typo is an error that says what to write,
 * not ZeroMQ's bare "Invalid argument".
 */
import { ErrorCode, FtcpError } from './errors.js';

/** tcp://HOST:PORT (HOST a name, an IPv4 address, [an IPv6 address] or `*`), ipc://PATH, inproc://NAME. */
const ENDPOINT = /^(?:tcp:\/\/(?:\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(?:\d{1,5}|\*)|(?:ipc|inproc):\/\/\S+)$/;

/** What is wrong with `text` as an endpoint to bind or connect to, or undefined when nothing is. */
export function endpointProblem(text: string, use: 'bind' | 'connect'): string | undefined {
  const example = use === 'bind' ? 'tcp://10.0.0.2:7400 (port 0 picks a free one)' : 'tcp://10.0.0.2:7400';
  if (!ENDPOINT.test(text)) return `'${text}' is not a ZeroMQ endpoint: give tcp://IP:PORT, like ${example}`;
  const port = /^tcp:\/\/.*:(\d+|\*)$/.exec(text)?.[1];
  if (port !== undefined && port !== '*' && Number(port) > 65535) return `'${text}': port ${port} is out of range (0-65535)`;
  if (use === 'connect' && (port === '*' || port === '0')) return `'${text}': a client needs the buffer's real port, not ${port}; like ${example}`;
  return undefined;
}

/** Throws {@link ErrorCode.BAD_CONFIG} when `text` is not an endpoint to `use`. */
export function checkEndpoint(text: string, use: 'bind' | 'connect'): string {
  const problem = endpointProblem(text, use);
  if (problem !== undefined) throw new FtcpError(ErrorCode.BAD_CONFIG, problem);
  return text;
}
