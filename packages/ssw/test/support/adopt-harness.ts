/**
 * Child process of the RecordingWrap adoption test, run in the server's
 * network namespace (`ip netns exec`). It plays both primaries against a
 * buffer of its own: the old one logs a connection record and five client
 * bytes, then the backup takes the next epoch and starts a RecordingWrap
 * that adopts the connection (no socket is ever rebuilt here). It prints
 * `{"ev":"ready"}`, then answers each stdin line `status` with the wrap's
 * status, stops cleanly on `stop`, and dies of an uncaught exception on
 * `crash` (a bug in the process that runs the wrap).
 *
 * argv: vip port queue clientIp clientPort
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { StableBufferClient, StableBufferServer } from '@ftcp/stable-buffer';
import { RecordingWrap } from '../../src/recording-wrap.js';
import { parseIpv4Address } from '../../src/wire/ipv4.js';
import { ADOPT_CLIENT_ISN, ADOPT_CONN_ID, ADOPT_SERVER_ISN, INJECT_MARK } from './marks.js';

const [vip, port, queue, clientIp, clientPort] = process.argv.slice(2) as [string, string, string, string, string];
const emit = (ev: string, fields: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ ev, ...fields })}\n`);

const dir = mkdtempSync(join(tmpdir(), 'ftcp-adopt-harness-'));
const server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'memory' });
const old = StableBufferClient.connect({ endpoint: server.endpoint, node: 'old-primary' });
const backup = StableBufferClient.connect({ endpoint: server.endpoint, node: 'backup' });
let wrap: RecordingWrap | undefined;
try {
  await old.attachAsWriter();
  const rec = {
    connId: ADOPT_CONN_ID,
    clientIp: parseIpv4Address(clientIp)!,
    serverIp: parseIpv4Address(vip)!,
    clientPort: Number(clientPort),
    serverPort: Number(port),
    clientIsn: ADOPT_CLIENT_ISN,
    serverIsn: ADOPT_SERVER_ISN,
    mss: 1460,
    clientWscale: 7,
    serverWscale: 7,
    sackOk: true,
    timestamps: true,
    clientTsval: 100,
    serverTsval: 900,
  };
  await old.writeConn(rec);
  await old.writeSegment({ connId: ADOPT_CONN_ID, offset: 0, flags: 0, payload: Buffer.from('hello') });
  old.close();
  const { epoch } = await backup.promote(1);
  await backup.attachAsWriter(epoch);
  wrap = await RecordingWrap.start({
    vip,
    port: Number(port),
    queue: Number(queue),
    mark: INJECT_MARK,
    buffer: backup,
    adopt: [{ rec, stableOffset: 5, clientAckOffset: 0, clientWindow: 500 * 128, clientTsEcr: 900 }],
  });
  emit('ready', { epoch });
} catch (err) {
  emit('error', { message: String(err), code: (err as { code?: string }).code });
  process.exit(1);
}

const stop = async (): Promise<void> => {
  await wrap?.stop();
  backup.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  emit('stopped');
  process.exit(0);
};
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'status') emit('status', wrap!.status() as unknown as Record<string, unknown>);
  else if (line === 'stop') void stop();
  else if (line === 'crash') {
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    setImmediate(() => {
      throw new Error('a bug in the process that runs the wrap');
    });
  }
});
