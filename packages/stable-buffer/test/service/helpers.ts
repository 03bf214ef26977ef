import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableBufferClient } from '../../src/client.js';
import type { ConnRecord } from '../../src/protocol/messages.js';
import { StableBufferServer, type ServerOptions } from '../../src/server.js';

/** A server on a free loopback port with its own data directory, and cleanup. */
export class Harness {
  server!: StableBufferServer;
  readonly dir = mkdtempSync(join(tmpdir(), 'ftcp-buf-'));
  private readonly clients: StableBufferClient[] = [];

  async start(opts: Partial<ServerOptions> = {}): Promise<this> {
    this.server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: this.dir, ...opts });
    return this;
  }

  client(node: string, extra: Partial<Parameters<typeof StableBufferClient.connect>[0]> = {}): StableBufferClient {
    const c = StableBufferClient.connect({ endpoint: this.server.endpoint, node, ...extra });
    this.clients.push(c);
    return c;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.server?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const conn = (connId: number, clientIsn = 1000): Omit<ConnRecord, 'kind' | 'epoch'> => ({
  connId, clientIp: 0x0a000001, serverIp: 0x0a000002, clientPort: 40000 + connId, serverPort: 6379, clientIsn, serverIsn: 77,
  mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: true, clientTsval: 1, serverTsval: 2,
});

/** Waits until `pred` holds, checking every 5 ms, at most `ms`. */
export async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A deterministic PRNG (mulberry32) so failures reproduce from the printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
