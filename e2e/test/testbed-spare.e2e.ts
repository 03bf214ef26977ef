/**
 * The bed's spare host and replica network (`Testbed.create({ spare: true })`),
 * which the second-failover test stands on: a stable buffer on the spare
 * must be reachable from the primary and the backup over the replica
 * network, and a crash of the backup must cut it off there too.
 */
import { expect } from 'chai';
import { Testbed, nextPort, nsList, startPeer } from '../src/index.js';

describe('Testbed with a spare host', function () {
  let bed: Testbed | undefined;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
  });

  afterEach(async () => {
    await bed?.destroy();
    bed = undefined;
  });

  it('lets the primary and the backup reach a server on the spare over the replica network, until a crash cuts the backup off', async function () {
    this.timeout(15_000);
    bed = await Testbed.create({ spare: true });
    expect(bed.hostRoles).to.deep.equal(['client', 'primary', 'backup', 'spare']);
    const spareAddr = bed.host('spare').replicaNetAddr ?? '';
    const port = nextPort();
    const s = startPeer(bed, 'spare', ['serve', '--port', String(port), '--bind', spareAddr, '--greet', 'spare']);
    await s.waitForEvent('listening', 5000);
    for (const role of ['primary', 'backup'] as const) {
      const c = startPeer(bed, role, ['connect', '--host', spareAddr, '--port', String(port), '--mode', 'probe', '--expect', 'spare']);
      await c.waitForEvent('probe', 3000);
    }
    // The spare is a host on the LAN like the others.
    const lanServer = startPeer(bed, 'spare', ['serve', '--port', String(port), '--bind', bed.host('spare').lanAddr, '--greet', 'spare']);
    await lanServer.waitForEvent('listening', 5000);
    const lan = startPeer(bed, 'client', ['connect', '--host', bed.host('spare').lanAddr, '--port', String(port), '--mode', 'probe', '--expect', 'spare']);
    await lan.waitForEvent('probe', 3000);
    // The client is not on the replica network.
    const r = await bed.exec('client', 'ip', ['route', 'get', spareAddr]).catch((e: Error) => e);
    expect(r).to.be.instanceOf(Error);
    const crash = await bed.crash('backup');
    expect(crash.cutInterfaces).to.include('rep1');
    const after = await bed.exec('backup', 'ip', ['route', 'get', spareAddr]).catch((e: Error) => e);
    expect(after, 'the crashed backup still routes to the spare').to.be.instanceOf(Error);
  });

  it('removes all five namespaces on destroy', async function () {
    this.timeout(10_000);
    bed = await Testbed.create({ spare: true });
    const names = [...bed.namespaces];
    expect(names).to.have.length(5);
    await bed.destroy();
    const left = await nsList();
    expect(left.filter((n) => names.includes(n))).to.deep.equal([]);
  });
});
