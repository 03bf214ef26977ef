import { Command, Flags } from '@oclif/core';
import { StableBufferClient } from '@ftcp/stable-buffer';
import { bufferFlag, fail } from '../../flags.js';

export default class BufferPing extends Command {
  static override summary = 'Measure round trips to a running buffer.';

  static override description = `Sends --count pings to the buffer one after another and prints the round-trip
time percentiles in microseconds: the floor under every acknowledgement the
primary waits for.`;

  static override examples = ['<%= config.bin %> <%= command.id %> --buffer tcp://10.0.1.2:7400 --count 1000'];

  static override enableJsonFlag = true;

  static override flags = {
    buffer: bufferFlag(),
    count: Flags.integer({ summary: 'Number of round trips.', default: 100, min: 1, max: 1_000_000 }),
    timeout: Flags.integer({ summary: 'Milliseconds to wait for each answer.', default: 3000, min: 1 }),
  };

  async run(): Promise<{ count: number; p50Us: number; p99Us: number; maxUs: number }> {
    const { flags } = await this.parse(BufferPing);
    const client = StableBufferClient.connect({ endpoint: flags.buffer, node: `ping-${process.pid}`, requestTimeoutMs: flags.timeout });
    try {
      const rtts: number[] = [];
      for (let i = 0; i < flags.count; i++) rtts.push((await client.ping()) * 1000);
      rtts.sort((a, b) => a - b);
      const at = (q: number) => Math.round(rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))]!);
      const result = { count: flags.count, p50Us: at(0.5), p99Us: at(0.99), maxUs: Math.round(rtts.at(-1)!) };
      this.log(`${result.count} round trips to ${flags.buffer}: p50 ${result.p50Us} us, p99 ${result.p99Us} us, max ${result.maxUs} us`);
      return result;
    } catch (err) {
      fail(err, ['check the endpoint, and that `ftcp buffer serve` runs there']);
    } finally {
      client.close();
    }
  }
}
