import { Command, Flags } from '@oclif/core';
import { StableBufferClient } from '@ftcp/stable-buffer';
import { fail } from '../flags.js';

interface BufferStatus {
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

export default class Status extends Command {
  static override summary = 'Show every node and connection of a replicated service, as its stable buffer sees them.';

  static override description = `The stable buffer is where every ftcp node meets, so it is where status lives:
the epoch and which node owns it, the failure detector, each connection's
stable offset (the lowest client byte not yet logged) and what is held beyond
a hole, each backup's lag in records, and the latest report of every node
(mode, stable-seq lag, unstable records, output-commit stall, replica lag,
divergences). --json prints all of it for tools.`;

  static override examples = [
    '<%= config.bin %> <%= command.id %> --buffer tcp://10.0.1.2:7400',
    'FTCP_BUFFER=tcp://10.0.1.2:7400 <%= config.bin %> <%= command.id %> --json',
  ];

  static override enableJsonFlag = true;

  static override flags = {
    buffer: Flags.string({ summary: 'The stable buffer\'s ZeroMQ endpoint.', env: 'FTCP_BUFFER', required: true }),
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
    const errors = Object.entries(s.counters.errors).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
    this.log(`epoch ${s.epoch} (owner ${s.owner || 'none'}), primary ${s.writerAttached ? 'attached' : 'not attached'}, detector ${s.detector.state} (silent ${s.detector.silentForMs} ms, ${s.detector.probes} probes, ${s.counters.failuresDeclared} failures declared, ${s.counters.failuresRetracted ?? 0} retracted when the primary spoke again)`);
    this.log(`log: head ${s.headLsn}, ${s.retainedBytes} bytes, durability ${s.durability}; errors: ${errors}`);
    this.log('');
    this.log('nodes:');
    if (s.nodes.length === 0) this.log('  (none reported)');
    for (const n of s.nodes) {
      const fields = Object.entries(n.report).filter(([, v]) => scalar(v)).map(([k, v]) => `${k}=${String(v)}`).join(' ');
      this.log(`  ${n.node} [${n.role}] ${n.ageMs} ms ago: ${fields}`);
    }
    this.log('backups:');
    if (s.backups.length === 0) this.log('  (none registered)');
    for (const b of s.backups) this.log(`  ${b.node} ${['observer', 'hot', 'cold'][b.mode] ?? b.mode}: ${b.lag} records behind`);
    this.log('connections:');
    if (s.connections.length === 0) this.log('  (none)');
    for (const c of s.connections) {
      this.log(`  ${c.connId}: stable offset ${c.stableOffset}, ${c.heldBeyond} bytes held beyond a hole, client acked ${c.ackOffset}${c.closed ? ', closed' : ''}`);
    }
  }
}
