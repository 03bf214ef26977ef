import { Command, Flags } from '@oclif/core';
import { StableBufferClient } from '@ftcp/stable-buffer';
import { bufferFlag, fail } from '../../flags.js';

export default class BufferStatus extends Command {
  static override summary = 'Show a running buffer\'s epoch, log, connections, backups and counters.';

  static override description = `Asks the buffer at --buffer for its status: the current epoch and its owner,
whether a primary is attached and how long it has been silent, the log's head
and retained size, each connection's stable offset, each backup's lag, and the
error counters (malformed frames, stale epochs, ...).`;

  static override examples = ['<%= config.bin %> <%= command.id %> --buffer tcp://10.0.1.2:7400', '<%= config.bin %> <%= command.id %> --buffer tcp://127.0.0.1:7400 --json'];

  static override enableJsonFlag = true;

  static override flags = {
    buffer: bufferFlag(),
    timeout: Flags.integer({ summary: 'Milliseconds to wait for the answer.', default: 3000, min: 1 }),
  };

  async run(): Promise<Record<string, unknown>> {
    const { flags } = await this.parse(BufferStatus);
    const client = StableBufferClient.connect({ endpoint: flags.buffer, node: `status-${process.pid}`, requestTimeoutMs: flags.timeout });
    try {
      const status = await client.status();
      if (!this.jsonEnabled()) {
        const s = status as { epoch: number; owner: string; writerAttached: boolean; headLsn: number; retainedBytes: number; durability: string; detector: { state: string; silentForMs: number }; connections: unknown[]; backups: { node: string; lag: number }[] };
        this.log(`epoch ${s.epoch} owned by ${s.owner || 'nobody'}; primary ${s.writerAttached ? 'attached' : 'not attached'} (detector ${s.detector.state}, silent ${s.detector.silentForMs} ms)`);
        this.log(`log head ${s.headLsn}, ${s.retainedBytes} bytes retained, durability ${s.durability}`);
        this.log(`${s.connections.length} connection(s); backups: ${s.backups.map((b) => `${b.node} (lag ${b.lag})`).join(', ') || 'none'}`);
      }
      return status;
    } catch (err) {
      fail(err, ['check the endpoint, and that `ftcp buffer serve` runs there', 'a buffer with CURVE keys refuses peers without one']);
    } finally {
      client.close();
    }
  }
}
