// The demo's round trip through a running buffer, with the library API: a
// primary logs a connection, client bytes and call records; a backup follows
// the log and reads the bytes back, fused from the segments.
import { StableBufferClient } from '../packages/stable-buffer/dist/src/index.js';

const endpoint = process.argv[2];
const primary = StableBufferClient.connect({ endpoint, node: 'demo-primary' });
const backup = StableBufferClient.connect({ endpoint, node: 'demo-backup' });
try {
  const { epoch } = await primary.attachAsWriter();
  console.log(`primary: writer of epoch ${epoch}`);
  await primary.writeConn({
    connId: 1, clientIp: 0x0a000001, serverIp: 0x0a000002, clientPort: 40000, serverPort: 6379,
    clientIsn: 0xfffffff0, serverIsn: 1234, mss: 1460, clientWscale: 7, serverWscale: 7,
    sackOk: true, timestamps: true, clientTsval: 1, serverTsval: 2,
  });
  const text = 'SET greeting hello\r\nGET greeting\r\n';
  // Out of order, like segments after a loss: stable-seq waits for the hole.
  const late = await primary.writeSegment({ connId: 1, offset: 20, flags: 0, payload: Buffer.from(text.slice(20)) });
  console.log(`primary: logged bytes [20, ${text.length}) first: stable offset ${late.stableOffset} (a hole before them)`);
  const ack = await primary.writeSegment({ connId: 1, offset: 0, flags: 0, payload: Buffer.from(text.slice(0, 20)) });
  console.log(`primary: logged bytes [0, 20): stable offset ${ack.stableOffset}, stable seq ${ack.stableSeq} (wrapped past 2^32)`);
  for (let n = 1; n <= 3; n++) await primary.writeCall({ stream: 'p1', callNo: n, data: Buffer.from(`clock_gettime #${n}`) });
  const sub = backup.subscribe({ mode: 'hot' });
  let records = 0;
  for await (const ev of sub) {
    if (ev.kind === 'records') records += ev.entries.length;
    if (records >= 6) break;
  }
  console.log(`backup: followed ${records} records from the log`);
  const bytes = await backup.readInstream(1, 0, text.length);
  console.log(`backup: read back ${bytes.length} bytes: ${JSON.stringify(bytes.toString())} ${bytes.toString() === text ? '(identical)' : '(DIFFERENT)'}`);
  const calls = await backup.readCalls('p1', 1);
  console.log(`backup: read back ${calls.length} call records of stream p1`);
  if (bytes.toString() !== text || calls.length !== 3) process.exitCode = 1;
} finally {
  primary.close();
  backup.close();
}
