/**
 * What `ftcp primary` and `ftcp backup` share: the flags of a node of a
 * replicated service, and reading the server's command line and service.
 */
import { hostname } from 'node:os';
import { Errors, Flags } from '@oclif/core';
import { ACK_STRATEGIES, type AckStrategy } from '@ftcp/ssw';
import { jsonLogger, type LogLevel } from '@ftcp/stable-buffer';
import { ExitCode, bufferFlag, fail } from './flags.js';
import { parseService, type Service } from './runtime/service.js';

/** How each command describes the flags whose meaning depends on its role. */
export interface NodeFlagSummaries {
  iface: string;
  ack: string;
  queue: string;
  failureTimeout: string;
}

/** The flags every node of a service takes. */
export function nodeFlags(s: NodeFlagSummaries) {
  return {
    service: Flags.string({ summary: 'The service: VIP:PORT that clients connect to.', required: true }),
    buffer: bufferFlag({ env: 'FTCP_BUFFER' }),
    iface: Flags.string({ summary: s.iface }),
    ack: Flags.option({ summary: s.ack, options: ACK_STRATEGIES, default: 'eager' })(),
    node: Flags.string({ summary: 'This node\'s name in the buffer and in ftcp status.', default: hostname() }),
    queue: Flags.integer({ summary: s.queue, default: 7400, min: 0, max: 65535 }),
    'failure-timeout': Flags.integer({ summary: s.failureTimeout, default: 30, min: 1 }),
    'log-level': Flags.option({ summary: 'Least severe log level written to stderr.', options: ['debug', 'info', 'warn', 'error'] as const, default: 'info' })(),
  };
}

/**
 * The server's command line, verbatim from after `--` (oclif's argv loses
 * empty arguments, like redis-server --save ''), and the parsed service.
 * Fails the command with exit code 2 and `hint` when either is missing or wrong.
 */
export function serverAndService(argv: readonly unknown[], serviceText: string, hint: string): { command: string[]; service: Service } {
  const dashes = process.argv.indexOf('--');
  const command = dashes >= 0 ? process.argv.slice(dashes + 1) : (argv as string[]);
  if (command.length === 0) throw new Errors.CLIError(`give the server command after --${hint}, like: -- redis-server --port 6379`, { exit: ExitCode.BAD_USAGE });
  try {
    return { command, service: parseService(serviceText) };
  } catch (err) {
    fail(err, [`give --service as VIP:PORT, like 10.0.0.100:6379${hint}`]);
  }
}

/** Parsed {@link nodeFlags}, as the runtime options Primary and Backup share. */
export function nodeOptions(
  flags: { buffer: string; iface?: string | undefined; ack: AckStrategy; node: string; queue: number; 'failure-timeout': number; 'log-level': string },
  role: 'primary' | 'backup',
) {
  return {
    buffer: flags.buffer,
    ...(flags.iface ? { iface: flags.iface } : {}),
    ack: flags.ack,
    node: flags.node,
    queue: flags.queue,
    failureTimeoutMs: flags['failure-timeout'],
    logger: jsonLogger(role, flags['log-level'] as LogLevel),
  };
}
