import { Args, Command } from '@oclif/core';
import { ExitCode, fail } from '../flags.js';
import { nodeFlags, nodeOptions, serverAndService } from '../node-flags.js';
import { Primary } from '../runtime/primary.js';

export default class PrimaryCommand extends Command {
  static override summary = 'Run an unmodified server as the primary of a replicated service.';

  static override description = `Starts CMD under the north-side wrap (an LD_PRELOAD shim recording the
server's nondeterministic calls) and wraps the service's TCP traffic with the
south-side wrap (NFQUEUE: client segments are logged, and the client never
sees an ack for a byte the stable buffer does not have: the server's acks are
clamped to what is logged, or with --ack hold a segment reaches the server's
kernel only once logged; the SYN-ACK is held until the connection record is
stable). Both share one ordered channel to the buffer.

If the buffer stays silent for longer than --failure-timeout ms the primary
goes quiet: it freezes the server and gives up the VIP on --iface, since the
buffer may have promoted a backup. It keeps asking the buffer for its epoch:
granted (the buffer restarted, nobody was promoted), it takes the VIP back
and continues; refused, it kills the server while its rules drop anything
the kernel would still send, and exits with code 4, so that there are never
two speakers.

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
    ...nodeFlags({
      iface: 'Interface holding the VIP: given up on step-down; its GSO/GRO sizes are capped for NFQUEUE.',
      ack: 'When the client hears its bytes are logged (FT-TCP 3.11). eager, delayed, lazy: a client segment reaches the server at once, every outgoing ack is clamped to what is logged, and the wrap sends an ACK at once, after 40 ms, or never. hold: a client segment reaches the server only once logged, so the server\'s own segments leave without the queue: downloads run near the speed of an unwrapped server (116% of clean against 77% under eager here with cubic, 75% against 50% with BBR). Its price: a request reaches the server one buffer round trip later (redis PING p50 1.70 against 1.44 ms under eager). eager, the default, for request-reply services; hold for services that mostly send.',
      queue: 'NFQUEUE queue number.',
      failureTimeout: 'Milliseconds of silence from the buffer before going quiet; match the buffer\'s.',
    }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(PrimaryCommand);
    const { command, service } = serverAndService(argv, flags.service, '');
    let primary: Primary;
    try {
      primary = new Primary({
        service,
        command,
        ...nodeOptions(flags, 'primary'),
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
