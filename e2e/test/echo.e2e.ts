import { expect } from 'chai';
import { ECHO_CLIENT_TOOL, Testbed, describeReport, nextPort, reportLogs, runFailover, startPeer } from '../src/index.js';
import { expectEchoIntact } from './failover-checks.js';

const MiB = 1024 * 1024;

describe('echod and echo-client', function () {
  this.timeout(120_000);

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
  });

  it('round-trips 20 MB each way through a bare echod with matching sha256 both ways', async () => {
    const r = await runFailover({ wrapped: false, rateMbit: null });
    expectEchoIntact(r, 20 * MiB);
    console.log(`      ${r.client!.ms.toFixed(0)} ms, longest gap ${r.client!.maxGapMs.toFixed(1)} ms`);
  });

  it('round-trips 20 MB each way through echod under ftcp primary, with no crash, unchanged', async () => {
    const r = await runFailover({ mode: null, rateMbit: 40 });
    expectEchoIntact(r, 20 * MiB);
    expect(r.capture?.speakers.map((s) => s.host)).to.deep.equal(['primary']);
    console.log(`      ${r.client!.ms.toFixed(0)} ms at 40 Mbit/s, longest gap ${r.client!.maxGapMs.toFixed(1)} ms`);
  });

  it('reports an error, not success, when the server closes before everything came back', async () => {
    const bed = await Testbed.create();
    try {
      const port = nextPort();
      const server = startPeer(bed, 'primary', ['serve', '--port', String(port), '--bind', bed.vip, '--mode', 'source', '--bytes', '1000']);
      await server.waitForEvent('listening', 5000);
      const client = bed.spawn('client', process.execPath, [ECHO_CLIENT_TOOL, '--host', bed.vip, '--port', String(port), '--bytes', '100000', '--timeout-ms', '10000']);
      const err = await client.waitForEvent<{ ev: string; code: string; received: number }>('error', 15_000);
      expect((await client.exited).code).to.equal(1);
      // 1000 bytes of 'a' are not the seeded stream either; the close is what ends it.
      expect(err.code).to.equal('EARLY_EOF');
      expect(client.events().some((e) => e.ev === 'done')).to.equal(false);
    } finally {
      await bed.destroy();
    }
  });
});
