import { hostname } from 'node:os';
import { Args, Command, Flags } from '@oclif/core';
import { jsonLogger, type LogLevel } from '@ftcp/stable-buffer';
import { ExitCode, fail } from '../flags.js';
import { Primary } from '../runtime/primary.js';
import { parseService } from '../runtime/service.js';

export default class PrimaryCommand extends Command {
  static override summary = 'Run an unmodified server as the primary of a replicated service.';

  static override description = `Starts CMD under the north-side wrap (an LD_PRELOAD shim recording the
server's nondeterministic calls) and wraps the service's TCP traffic with the
south-side wrap (NFQUEUE: client segments are logged, acks held to what the
stable buffer has, the SYN-ACK held until the connection record is stable).
Both share one ordered channel to the buffer.

If the buffer stays silent for longer than --failure-timeout ms the primary
steps down: it freezes and kills the server while its rules drop anything the
kernel would still send, gives up the VIP on --iface, and exits with code 4,
so that a backup can take over with never two speakers.

Needs root (NFQUEUE, iptables). Exit codes: the server's own when it exits,
0 on SIGINT/SIGTERM, 2 bad flags, 3 could not start, 4 stepped down.`;

  static override examples = [
    '<%= config.bin %> <%= command.id %> --service 10.0.0.100:6379 --buffer tcp://10.0.1.2:7400 --iface eth0 -- redis-server --port 6379 --save ""',
    '<%= config.bin %> <%= command.id %> --service 10.0.0.100:8000 --buffer tcp://10.0.1.2:7400 --ack delayed -- python3 -m http.server 8000',
  ];

  static override strict = false;

  static override args = {
    command: Args.string({ description: 'The server command and its arguments, after --.', required: false }),
  };

  static override flags = {
    service: Flags.string({ summary: 'The service: VIP:PORT that clients connect to.', required: true }),
    buffer: Flags.string({ summary: 'The stable buffer\'s ZeroMQ endpoint.', required: true, env: 'FTCP_BUFFER' }),
    iface: Flags.string({ summary: 'Interface holding the VIP: given up on step-down; its GSO/GRO sizes are capped for NFQUEUE.' }),
    ack: Flags.option({ summary: 'When the client hears its bytes are logged (FT-TCP 3.11).', options: ['eager', 'delayed', 'lazy'] as const, default: 'eager' })(),
    node: Flags.string({ summary: 'This node\'s name in the buffer and in ftcp status.', default: hostname() }),
    queue: Flags.integer({ summary: 'NFQUEUE queue number.', default: 7400, min: 0, max: 65535 }),
    'failure-timeout': Flags.integer({ summary: 'Milliseconds of silence from the buffer before stepping down; match the buffer\'s.', default: 30, min: 1 }),
    'log-level': Flags.option({ summary: 'Least severe log level written to stderr.', options: ['debug', 'info', 'warn', 'error'] as const, default: 'info' })(),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(PrimaryCommand);
    // The server's command line passes through verbatim: oclif's argv loses
    // empty arguments (redis-server --save ''), so read what follows `--`.
    const dashes = process.argv.indexOf('--');
    const command = dashes >= 0 ? process.argv.slice(dashes + 1) : (argv as string[]);
    if (command.length === 0) this.error('give the server command after --, like: -- redis-server --port 6379', { exit: ExitCode.BAD_USAGE });
    let service;
    try {
      service = parseService(flags.service);
    } catch (err) {
      fail(err, ['give --service as VIP:PORT, like 10.0.0.100:6379']);
    }
    let primary: Primary;
    try {
      primary = new Primary({
        service,
        buffer: flags.buffer,
        command,
        ...(flags.iface ? { iface: flags.iface } : {}),
        ack: flags.ack,
        node: flags.node,
        queue: flags.queue,
        failureTimeoutMs: flags['failure-timeout'],
        logger: jsonLogger('primary', flags['log-level'] as LogLevel),
      });
      await primary.start();
    } catch (err) {
      fail(err, ['run as root: the wraps need NFQUEUE and iptables', 'check --buffer, and that `ftcp buffer serve` runs there']);
    }
    const stop = (): void => void primary.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.stdout.write(JSON.stringify({ event: 'ready', epoch: primary.epoch }) + '\n');
    const e = await primary.done;
    if (e.reason === 'stepped-down') this.exit(4);
    if (e.reason === 'server-exited') this.exit(e.code ?? 1);
    this.exit(ExitCode.OK);
  }
}
