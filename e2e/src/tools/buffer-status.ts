#!/usr/bin/env node
/**
 * Polls a stable buffer's status from inside a host and prints what a test
 * needs to tell whether a backup has caught up, one JSON line per poll. One
 * process for a whole watch: `ftcp status` costs a CLI start (about a second
 * of CPU on a loaded two-core host) per look, enough to make a primary's own
 * buffer watch go quiet.
 *
 *   buffer-status --buffer ENDPOINT [--interval-ms 100] [--max-ms 60000]
 *
 * Events on stdout, each with `t` (ms since the epoch):
 *   status {epoch, owner, headLsn, calls, backups: [{node, mode, consumed, lag}],
 *           nodes: [{node, role, ageMs, mode, epoch, callsPlayed, callsRecorded, connections, divergences}]}
 *   error  {message}     a poll that got no answer (the watch goes on)
 * `calls` is the sum over the log's streams of their last contiguous call
 * number: every call record the log holds. Exits 0 after --max-ms, or on
 * SIGTERM.
 */
import { StableBufferClient } from '@ftcp/stable-buffer';

function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(String(process.argv[i]).replace(/^--/, ''), String(process.argv[i + 1]));
const endpoint = args.get('buffer');
if (endpoint === undefined) {
  process.stderr.write('buffer-status: --buffer is required\n');
  process.exit(2);
}
const intervalMs = Number(args.get('interval-ms') ?? 100);
const maxMs = Number(args.get('max-ms') ?? 60_000);

const client = StableBufferClient.connect({ endpoint, node: `e2e-status-${process.pid}`, requestTimeoutMs: 2000 });
const until = Date.now() + maxMs;
let stopped = false;
process.once('SIGTERM', () => (stopped = true));
while (!stopped && Date.now() < until) {
  try {
    const s = await client.status();
    const streams = (s['streams'] as Array<{ lastCallNo: number }> | undefined) ?? [];
    const nodes = (s['nodes'] as Array<{ node: string; role: string; ageMs: number; report: Record<string, unknown> }> | undefined) ?? [];
    emit('status', {
      epoch: s['epoch'],
      owner: s['owner'],
      headLsn: s['headLsn'],
      firstLsn: s['firstLsn'],
      calls: streams.reduce((n, x) => n + x.lastCallNo, 0),
      backups: s['backups'],
      nodes: nodes.map((n) => ({
        node: n.node,
        role: n.role,
        ageMs: n.ageMs,
        mode: n.report['mode'],
        epoch: n.report['epoch'],
        callsPlayed: n.report['callsPlayed'],
        callsRecorded: n.report['callsRecorded'],
        connections: n.report['connections'],
        divergences: n.report['divergences'],
      })),
    });
  } catch (err) {
    emit('error', { message: String(err) });
  }
  await new Promise((r) => setTimeout(r, intervalMs));
}
client.close();
process.exit(0);
