import { Command, Flags } from '@oclif/core';
import { runFailover, type FailoverReport } from '@ftcp/e2e';
import { ExitCode, fail, parseSize } from '../flags.js';

export default class Demo extends Command {
  static override summary = 'Crash a primary host mid-stream and watch the backup take over the live connection.';

  static override description = `Builds three hosts as network namespaces on this machine (a client, a primary
and a backup, on one LAN, with a replica link between primary and backup),
then runs:
  - a stable buffer on the backup's end of the replica link,
  - an unmodified C echo server under \`ftcp primary\` on the primary,
  - the same server under \`ftcp backup --mode MODE\` on the backup,
  - a client that streams --bytes each way through the service address and
    checks every byte it gets back (sha256 both ways, byte by byte).
At a random point of the stream (--seed replays one) the primary host is
crashed fail-stop: its links are cut and every process in it is killed, so
its kernel sends no FIN or RST. The demo prints the timeline: crash,
failure detected, backup promoted, VIP moved, connection rebuilt, client
resumed, bytes verified. Everything it built is removed afterwards.

Needs root (namespaces, iptables, NFQUEUE, TCP_REPAIR). Exit codes: 0 the
client saw every byte and no error, 1 it did not, 2 bad flags.`;

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --mode cold --bytes 50MiB'];

  static override flags = {
    mode: Flags.option({ summary: 'The backup\'s mode.', options: ['hot', 'cold'] as const, default: 'hot' })(),
    bytes: Flags.string({ summary: 'Bytes the client streams each way, like 20MiB (at least 1MiB).', default: '20MiB' }),
    'rate-mbit': Flags.integer({ summary: 'The client\'s sending rate (so the crash lands mid-stream).', default: 40, min: 1 }),
    'failure-timeout': Flags.integer({
      summary: 'Milliseconds of silence before the buffer declares the primary failed (the buffer\'s default). A busy machine may need more: a starved but healthy primary can be declared failed.',
      default: 30,
      min: 1,
    }),
    seed: Flags.integer({ summary: 'Seed of the crash point and the client\'s bytes; printed, so a run can be replayed.', min: 0, max: 0xffffffff }),
    verbose: Flags.boolean({ summary: 'Also print every process\'s log.', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Demo);
    let bytes = 0;
    try {
      bytes = parseSize(flags.bytes);
    } catch (err) {
      fail(err, ['give --bytes like 20MiB']);
    }
    if (bytes < 1024 * 1024) this.error(`--bytes ${flags.bytes} is too small to crash mid-stream: give at least 1MiB`, { exit: ExitCode.BAD_USAGE });
    if (process.getuid?.() !== 0) this.error('the demo builds network namespaces and wraps with NFQUEUE and TCP_REPAIR: run it as root', { exit: ExitCode.BAD_USAGE });
    this.log(`ftcp demo: ${flags.mode} backup, ${mib(bytes)} each way through an echo server at ${flags['rate-mbit']} Mbit/s; the primary host crashes mid-stream`);
    const r = await runFailover({
      mode: flags.mode,
      bytes,
      rateMbit: flags['rate-mbit'],
      failureTimeoutMs: flags['failure-timeout'],
      ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
      log: (line) => this.log(`  ${line.trim()}`),
    });
    this.printTimeline(r);
    if (flags.verbose) for (const [name, lines] of Object.entries(r.logs)) this.log(`--- ${name}\n${lines.join('\n')}`);
    const ok = r.client?.ok === true && (r.capture?.serverRsts.length ?? 0) === 0;
    this.log(ok ? '\nThe client never saw an error, a reset or a lost byte.' : `\nThe failover was not transparent${r.clientError ? `: ${r.clientError.code} ${r.clientError.message}` : ''}${r.harnessError ? ` (${r.harnessError})` : ''}. Run again with --verbose --seed ${r.seed}.`);
    this.exit(ok ? ExitCode.OK : 1);
  }

  private printTimeline(r: FailoverReport): void {
    const cut = r.crash?.cutAt;
    const at = (t: number | undefined): string => (t === undefined || cut === undefined ? '        -' : `${(t - cut >= 0 ? '+' : '') + (t - cut).toFixed(0)} ms`.padStart(9));
    const t = r.takeover;
    const complete = t.complete ?? {};
    this.log('\ntimeline (from the crash):');
    this.log(`  ${at(cut)}  primary host crashed: links cut, ${r.crash?.killedPids.length ?? 0} processes killed`);
    this.log(`  ${at(t.bufferDetected)}  stable buffer declared the primary failed (no answer to its probes)`);
    this.log(`  ${at(t.promoted)}  backup promoted to epoch ${String(complete['epoch'] ?? '?')}: the old primary can write nothing more`);
    this.log(`  ${at(t.vipMoved)}  VIP ${r.vip} moved to the backup (gratuitous ARP)`);
    this.log(`  ${at(t.takeoverComplete)}  replica live: ${String(complete['rebuilt'] ?? 0)} of ${String(complete['connections'] ?? 0)} connections rebuilt with TCP_REPAIR at their descriptor numbers`);
    this.log(`  ${at(cut !== undefined && r.resumedAfterCrashMs !== undefined ? cut + r.resumedAfterCrashMs : undefined)}  client received its next echoed byte`);
    const c = r.client;
    if (c) {
      this.log(`\nclient: sent ${mib(c.sent)}, received ${mib(c.received)}; sha256 ${c.sha256Sent === c.sha256Received ? 'matches' : 'DIFFERS'} both ways (${c.sha256Received.slice(0, 16)}...); longest gap ${c.maxGapMs.toFixed(0)} ms`);
    }
    if (r.capture) this.log(`capture at the client: ${r.capture.serverRsts.length} RST and ${r.capture.serverFinsBeforeClientFin.length} early FIN from the server side; speakers in turn: ${r.capture.speakers.map((s) => s.host ?? s.mac).join(' then ')}`);
    this.log(`seed ${r.seed} (replay with --seed ${r.seed})`);
  }
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}
