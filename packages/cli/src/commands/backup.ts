import { Args, Command, Flags } from '@oclif/core';
import { ExitCode, fail } from '../flags.js';
import { nodeFlags, nodeOptions, serverAndService } from '../node-flags.js';
import { Backup } from '../runtime/backup.js';

export default class BackupCommand extends Command {
  static override summary = 'Follow a primary through the stable buffer and take over its live connections when it fails.';

  static override description = `Runs the backup of a replicated service. CMD is the same server command the
primary runs; it runs here under the north-side wrap in playback.

--mode hot starts the replica at once: it replays the primary's calls as the
buffer logs them (a backup started late catches up from the log first), so a
takeover only has to finish the last records. --mode cold runs nothing until
the failure: then the replica starts and rolls forward from the whole log,
which takes longer but costs nothing while the primary is healthy; clients
are held with zero-window ACKs meanwhile (FT-TCP 2.3.1).

When the buffer declares the primary failed, the backup takes the next epoch
(the old primary can write nothing more), wraps the service in record mode,
adds the VIP to --iface and announces it with gratuitous ARP, and lets the
replica go live: each of the primary's connections is rebuilt with
TCP_REPAIR as a real socket at the same descriptor number, and the bytes the
client has not acknowledged are sent again at once. From then on this node is
the primary: it records, so a new backup can join, and it steps down like
\`ftcp primary\` if it loses the buffer.

The replica binds the VIP before this host owns it, so the backup sets
net.ipv4.ip_nonlocal_bind=1 in its network namespace. Needs root (NFQUEUE,
iptables, TCP_REPAIR). Exit codes: the server's own when it exits (86: the
replica diverged from the primary), 0 on SIGINT/SIGTERM, 2 bad flags, 3 could
not start or lost the log it follows (a refused subscription), 4 stepped down
(after a takeover), 5 the takeover failed, 6 another backup took over first
(this one never touched the service).`;

  static override examples = [
    '<%= config.bin %> <%= command.id %> --mode hot --service 10.0.0.100:6379 --buffer tcp://10.0.1.2:7400 --iface eth0 -- redis-server --port 6379 --save ""',
    '<%= config.bin %> <%= command.id %> --mode cold --service 10.0.0.100:8000 --buffer tcp://10.0.1.2:7400 --iface eth0 -- python3 -m http.server 8000',
  ];

  static override strict = false;

  static override args = {
    command: Args.string({ description: 'The server command and its arguments, after --: the same as the primary\'s.', required: false }),
  };

  static override flags = {
    mode: Flags.option({ summary: 'hot: replay as the primary runs; cold: start the replica only after a failure.', options: ['hot', 'cold'] as const, required: true })(),
    ...nodeFlags({
      iface: 'Interface that takes the VIP on takeover (and its GSO/GRO sizes capped for NFQUEUE).',
      ack: 'After a takeover: when the client hears its bytes are logged (FT-TCP 3.11); with hold, client segments wait to be logged, and outgoing ones still all go through the queue (adopted connections need them).',
      queue: 'NFQUEUE queue number after a takeover.',
      failureTimeout: 'After a takeover: milliseconds of silence from the buffer before stepping down; match the buffer\'s.',
    }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(BackupCommand);
    const { command, service } = serverAndService(argv, flags.service, ': the same as the primary\'s');
    let backup: Backup;
    try {
      backup = new Backup({
        mode: flags.mode,
        service,
        command,
        ...nodeOptions(flags, 'backup'),
      });
      await backup.start();
    } catch (err) {
      fail(err, ['run as root: the backup needs NFQUEUE, iptables and TCP_REPAIR', 'check --buffer, and that `ftcp buffer serve` runs there']);
    }
    const stop = (): void => void backup.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.stdout.write(JSON.stringify({ event: 'ready', mode: flags.mode }) + '\n');
    const e = await backup.done;
    if (e.reason === 'stepped-down') this.exit(4);
    if (e.reason === 'takeover-failed') this.exit(5);
    if (e.reason === 'takeover-lost') this.exit(6);
    if (e.reason === 'feed-ended') this.exit(3);
    if (e.reason === 'server-exited') this.exit(e.code ?? 1);
    this.exit(ExitCode.OK);
  }
}
