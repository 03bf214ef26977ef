import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, StableBufferClient, StableBufferServer, type Logger } from '@ftcp/stable-buffer';
import { logWriteRefusals, recordingReport } from '../src/runtime/recording-report.js';

describe('a recording node and a full log', function () {
  this.timeout(10_000);
  let dir: string;
  let server: StableBufferServer;
  let client: StableBufferClient;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftcp-full-'));
    server = await StableBufferServer.start({ listen: 'tcp://127.0.0.1:0', dataDir: dir, durability: 'commit', maxLogBytes: 400 });
    client = StableBufferClient.connect({ endpoint: server.endpoint, node: 'primary' });
  });
  afterEach(async () => {
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('logs the refused writes once per interval with the reason, and reports how many there were', async () => {
    const lines: { event: string; fields: Record<string, unknown> }[] = [];
    const logger: Logger = { log: (_level, event, fields = {}) => lines.push({ event, fields }) };
    logWriteRefusals(client, logger);
    await client.attachAsWriter();
    await client.writeConn({
      connId: 1, clientIp: 1, serverIp: 2, clientPort: 40001, serverPort: 80, clientIsn: 1, serverIsn: 2,
      mss: 1460, clientWscale: 7, serverWscale: 7, sackOk: true, timestamps: false, clientTsval: 0, serverTsval: 0,
    });
    // Two writes past the cap: they wait for room (see StableBufferClient.writesRefused).
    for (const connId of [1, 1]) void client.writeSegment({ connId, offset: 0, flags: 0, payload: Buffer.alloc(500) }).catch(() => {});
    for (let i = 0; i < 200 && client.writesRefused < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(lines.map((l) => [l.event, l.fields.code])).to.deep.equal([['write-refused', ErrorCode.CAPACITY]]);
    expect(recordingReport(null, undefined, client).writesRefused).to.equal(2);
  });
});
