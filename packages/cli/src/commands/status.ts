import { Command, Flags } from '@oclif/core';
import { StableBufferClient } from '@ftcp/stable-buffer';
import { z } from 'zod';
import { bufferFlag, fail } from '../flags.js';

export interface BufferStatus {
  epoch: number;
  owner: string;
  writerAttached: boolean;
  durability: string;
  headLsn: number;
  retainedBytes: number;
  detector: { state: string; silentForMs: number; probes: number; misses: number };
  connections: { connId: number; stableOffset: number; heldBeyond: number; ackOffset: number; closed: boolean }[];
  backups: { node: string; mode: number; lag: number }[];
  nodes: { node: string; role: string; ageMs: number; report: Record<string, unknown> }[];
  counters: { errors: Record<string, number>; failuresDeclared: number; failuresRetracted?: number };
}

const scalar = (v: unknown): boolean => ['string', 'number', 'boolean'].includes(typeof v);

/**
 * A record-mode node's per-connection stable-seq lag (see the runtime's
 * recording-report.ts). Checked: a report is whatever a node sent, and one
 * from another version must not break the command.
 */
const stableLagSchema = z.array(z.object({ connId: z.number(), client: z.string(), lagBytes: z.number(), clientAcked: z.number() }));

/** The lines a node's report adds below its own: one per connection it lists. */
function connectionLines(report: Record<string, unknown>): string[] {
  const lag = stableLagSchema.safeParse(report.stableLag);
  if (!lag.success) return report.stableLag === undefined ? [] : ['    (stable lag per connection: unreadable)'];
  const lines = lag.data.map((c) => `    conn ${c.connId} ${c.client}: ${c.lagBytes} bytes beyond stable-seq, client acked ${c.clientAcked}`);
  const total = typeof report.connections === 'number' ? report.connections : lag.data.length;
  if (total > lag.data.length) lines.push(`    (${total - lag.data.length} more connections, lagging least, not listed)`);
  return lines;
}

/** `ftcp status` for people: the buffer, then every node (its scalars, then its connections), backup and connection. */
export function statusLines(s: BufferStatus): string[] {
  const out: string[] = [];
  const errors = Object.entries(s.counters.errors).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  out.push(`epoch ${s.epoch} (owner ${s.owner || 'none'}), primary ${s.writerAttached ? 'attached' : 'not attached'}, detector ${s.detector.state} (silent ${s.detector.silentForMs} ms, ${s.detector.probes} probes, ${s.counters.failuresDeclared} failures declared, ${s.counters.failuresRetracted ?? 0} retracted when the primary spoke again)`);
  out.push(`log: head ${s.headLsn}, ${s.retainedBytes} bytes, durability ${s.durability}; errors: ${errors}`);
  out.push('');
  out.push('nodes:');
  if (s.nodes.length === 0) out.push('  (none reported)');
  for (const n of s.nodes) {
    const fields = Object.entries(n.report).filter(([, v]) => scalar(v)).map(([k, v]) => `${k}=${String(v)}`).join(' ');
    out.push(`  ${n.node} [${n.role}] ${n.ageMs} ms ago: ${fields}`);
    out.push(...connectionLines(n.report));
  }
  out.push('backups:');
  if (s.backups.length === 0) out.push('  (none registered)');
  for (const b of s.backups) out.push(`  ${b.node} ${['observer', 'hot', 'cold'][b.mode] ?? b.mode}: ${b.lag} records behind`);
  out.push('connections:');
  if (s.connections.length === 0) out.push('  (none)');
  for (const c of s.connections) {
    out.push(`  ${c.connId}: stable offset ${c.stableOffset}, ${c.heldBeyond} bytes held beyond a hole, client acked ${c.ackOffset}${c.closed ? ', closed' : ''}`);
  }
  return out;
}

export default class Status extends Command {
  static override summary = 'Show every node and connection of a replicated service, as its stable buffer sees them.';

  static override description = `The stable buffer is where every ftcp node meets, so it is where status lives:
the epoch and which node owns it, the failure detector, each connection's
stable offset (the lowest client byte not yet logged) and what is held beyond
a hole, each backup's lag in records, and the latest report of every node
(mode, epoch, unstable records, output-commit stall now and the longest
since its last report, replica lag, divergences; a node in record mode adds
its stable-seq lag, in total and one line for each of the connections that
lag most). --json prints all of it for tools.`;

  static override examples = [
    '<%= config.bin %> <%= command.id %> --buffer tcp://10.0.1.2:7400',
    'FTCP_BUFFER=tcp://10.0.1.2:7400 <%= config.bin %> <%= command.id %> --json',
  ];

  static override enableJsonFlag = true;

  static override flags = {
    buffer: bufferFlag({ env: 'FTCP_BUFFER' }),
    timeout: Flags.integer({ summary: 'Milliseconds to wait for the answer.', default: 3000, min: 1 }),
  };

  async run(): Promise<Record<string, unknown>> {
    const { flags } = await this.parse(Status);
    const client = StableBufferClient.connect({ endpoint: flags.buffer, node: `status-${process.pid}`, requestTimeoutMs: flags.timeout });
    let status: Record<string, unknown>;
    try {
      status = await client.status();
    } catch (err) {
      fail(err, ['check --buffer (or FTCP_BUFFER) and that `ftcp buffer serve` runs there']);
    } finally {
      client.close();
    }
    if (!this.jsonEnabled()) this.print(status as unknown as BufferStatus);
    return status;
  }

  private print(s: BufferStatus): void {
    for (const line of statusLines(s)) this.log(line);
  }
}
