import { writeFileSync } from 'node:fs';
import { Command, Flags } from '@oclif/core';
import { makeCurveKeyPair } from '@ftcp/stable-buffer';

export default class BufferKeygen extends Command {
  static override summary = 'Make a CURVE key pair for the buffer or one of its peers.';

  static override description = `Writes {"publicKey","secretKey"} (Z85) to --out, readable only by its owner,
and prints the public key: put a peer's public key in the buffer's --curve-allow
file, and give peers the buffer's public key.`;

  static override examples = ['<%= config.bin %> <%= command.id %> --out server.key'];

  static override flags = {
    out: Flags.string({ summary: 'File to write the key pair to.', required: true }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(BufferKeygen);
    const pair = makeCurveKeyPair();
    writeFileSync(flags.out, JSON.stringify(pair) + '\n', { mode: 0o600 });
    this.log(pair.publicKey);
  }
}
