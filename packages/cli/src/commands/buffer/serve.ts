import { readFileSync } from 'node:fs';
import { Command, Flags } from '@oclif/core';
import { ErrorCode, FtcpError, StableBufferServer, jsonLogger, type LogLevel } from '@ftcp/stable-buffer';
import { ExitCode, fail, parseSize } from '../../flags.js';

export default class BufferServe extends Command {
  static override summary = 'Run the stable buffer: the primary\'s records in LMDB, and failure detection of the primary.';

  static override description = `The stable buffer is where a primary's client segments and call records become
stable (FT-TCP 2.3, 3.10). It runs on a host other than the primary's, usually
the backup's, and outlives the primary. It acknowledges each record at the
chosen durability, streams the log to backups, and declares the primary failed
when it stays silent: after --probe-interval ms of silence it probes, and with
no answer within --failure-timeout ms it tells every subscribed backup.

Durability decides when a record counts as stable:
  memory  held by this process (the paper's meaning: survives the primary's crash)
  commit  LMDB transaction committed (also survives this process's crash)
  fsync   flushed to disk (also survives power loss)

On start it prints one JSON line {"event":"ready",...} on stdout; logs are JSON
lines on stderr. SIGINT or SIGTERM flush the store and exit 0.
Exit codes: 0 stopped cleanly, 2 bad flags, 3 could not start (address in use,
unreadable data directory).`;

  static override examples = [
    {
      description: 'Serve on the replica link, commit durability, 30 ms failure timeout:',
      command: '<%= config.bin %> <%= command.id %> --listen tcp://10.0.1.2:7400 --data-dir /var/lib/ftcp/buffer',
    },
    {
      description: 'Fastest acknowledgements (records survive the primary, not this process):',
      command: '<%= config.bin %> <%= command.id %> --listen tcp://10.0.1.2:7400 --data-dir /tmp/buf --durability memory',
    },
    {
      description: 'Refuse peers without a known CURVE key:',
      command:
        '<%= config.bin %> <%= command.id %> --listen tcp://10.0.1.2:7400 --data-dir /tmp/buf --curve-key-file server.key --curve-allow clients.pub',
    },
  ];

  static override flags = {
    listen: Flags.string({
      summary: 'ZeroMQ endpoint to bind, tcp://IP:PORT (port 0 picks a free port, printed in the ready line).',
      required: true,
    }),
    'data-dir': Flags.string({ summary: 'Directory of the LMDB store; created if missing; reused after a restart.', required: true }),
    durability: Flags.option({
      summary: 'When a record is acknowledged: memory, commit or fsync.',
      options: ['memory', 'commit', 'fsync'] as const,
      default: 'commit',
    })(),
    'probe-interval': Flags.integer({ summary: 'Milliseconds of silence from the primary before a probe.', default: 10, min: 1 }),
    'failure-timeout': Flags.integer({ summary: 'Milliseconds a probe may go unanswered before the primary is declared failed.', default: 30, min: 1 }),
    'max-log-bytes': Flags.string({
      summary: 'Cap on retained log bytes (e.g. 8GiB); writes beyond it are refused, never dropped: they wait on their node, and a restart with a larger cap takes them.',
      default: '8GiB',
    }),
    retain: Flags.option({
      summary: 'What the log keeps: all (a backup may join at any time, a new one after a takeover too) or consumed (collect what every registered backup consumed; no backup can join afterwards).',
      options: ['all', 'consumed'] as const,
      default: 'all',
    })(),
    'curve-key-file': Flags.string({
      summary: 'JSON file {"publicKey","secretKey"} (Z85) of this server; enables CURVE encryption.',
      dependsOn: ['curve-allow'],
    }),
    'curve-allow': Flags.string({ summary: 'File of allowed client public keys (Z85), one per line.', dependsOn: ['curve-key-file'] }),
    'log-level': Flags.option({ summary: 'Least severe log level written to stderr.', options: ['debug', 'info', 'warn', 'error'] as const, default: 'info' })(),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(BufferServe);
    let server: StableBufferServer;
    try {
      server = await StableBufferServer.start({
        listen: flags.listen,
        dataDir: flags['data-dir'],
        durability: flags.durability,
        probeIntervalMs: flags['probe-interval'],
        failureTimeoutMs: flags['failure-timeout'],
        maxLogBytes: parseSize(flags['max-log-bytes']),
        retain: flags.retain,
        ...(flags['curve-key-file'] && flags['curve-allow']
          ? { curve: { ...readKeyFile(flags['curve-key-file']), clientPublicKeys: readAllowFile(flags['curve-allow']) } }
          : {}),
        logger: jsonLogger('buffer', flags['log-level'] as LogLevel),
      });
    } catch (err) {
      fail(err, [
        'check that the address belongs to this host and the port is free (ss -ltnp)',
        'check that --data-dir is a writable directory',
      ]);
    }
    // Handlers go in before the ready line: a supervisor may signal us the moment it reads it.
    const stopped = new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    process.stdout.write(JSON.stringify({ event: 'ready', endpoint: server.endpoint, epoch: server.store.epoch, headLsn: server.store.headLsn }) + '\n');
    await stopped;
    await server.close();
    this.exit(ExitCode.OK);
  }
}

function readKeyFile(path: string): { publicKey: string; secretKey: string } {
  try {
    const k = JSON.parse(readFileSync(path, 'utf8')) as { publicKey?: unknown; secretKey?: unknown };
    if (typeof k.publicKey === 'string' && typeof k.secretKey === 'string') return { publicKey: k.publicKey, secretKey: k.secretKey };
  } catch (err) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `cannot read CURVE key file ${path}: ${(err as Error).message}`);
  }
  throw new FtcpError(ErrorCode.BAD_CONFIG, `CURVE key file ${path} needs "publicKey" and "secretKey" strings`);
}

function readAllowFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FtcpError(ErrorCode.BAD_CONFIG, `cannot read allowed keys file ${path}: ${(err as Error).message}`);
  }
  const keys = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (keys.length === 0) throw new FtcpError(ErrorCode.BAD_CONFIG, `allowed keys file ${path} lists no key`);
  return keys;
}
