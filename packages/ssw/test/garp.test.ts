import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isFtcpError } from '@ftcp/stable-buffer';
import { SswErrorCode } from '../src/errors.js';
import { sendGratuitousArp } from '../src/garp.js';
import type { GratuitousArpOptions } from '../src/garp.js';

const CHILD = fileURLToPath(new URL('./support/garp-child.js', import.meta.url));
const isRoot = process.getuid?.() === 0;

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    expect(isFtcpError(err), String(err)).to.equal(true);
    return (err as { code: string }).code;
  }
  return undefined;
}

describe('sendGratuitousArp (root, two network namespaces on a veth)', function () {
  this.timeout(20_000);
  // Unique per run: namespaces and devices are machine-wide names.
  const tag = `${process.pid % 100000}`;
  const peerNs = `ftcp-garp-peer-${tag}`;
  const senderNs = `ftcp-garp-send-${tag}`;
  const peerDev = `fgp${tag}`;
  const senderDev = `fgs${tag}`;
  const subnet = `10.${200 + (process.pid % 50)}.${process.pid % 250}`;
  const vip = `${subnet}.2`;
  const oldMac = '02:00:00:00:0a:01';
  const newMac = '02:00:00:00:0b:02';

  /** The peer's neighbour entry for the VIP: its MAC and state, if any. */
  function peerEntry(): { lladdr?: string; state?: string[] } | undefined {
    const out = JSON.parse(sh('ip', '-n', peerNs, '-j', 'neigh', 'show', vip, 'dev', peerDev)) as { lladdr?: string; state?: string[] }[];
    return out[0];
  }

  async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  before(function () {
    if (!isRoot) this.skip();
    sh('ip', 'netns', 'add', peerNs);
    sh('ip', 'netns', 'add', senderNs);
    sh('ip', 'link', 'add', peerDev, 'type', 'veth', 'peer', 'name', senderDev);
    sh('ip', 'link', 'set', peerDev, 'netns', peerNs);
    sh('ip', 'link', 'set', senderDev, 'netns', senderNs);
    sh('ip', '-n', senderNs, 'link', 'set', senderDev, 'address', oldMac);
    // No announcement of its own when the MAC changes (arp_notify, the default 0 made explicit).
    sh('ip', 'netns', 'exec', senderNs, 'sysctl', '-qw', `net.ipv4.conf.${senderDev}.arp_notify=0`);
    sh('ip', '-n', peerNs, 'addr', 'add', `${subnet}.1/24`, 'dev', peerDev);
    sh('ip', '-n', senderNs, 'addr', 'add', `${vip}/24`, 'dev', senderDev);
    sh('ip', '-n', peerNs, 'link', 'set', peerDev, 'up');
    sh('ip', '-n', senderNs, 'link', 'set', senderDev, 'up');
  });

  after(() => {
    if (!isRoot) return;
    for (const ns of [peerNs, senderNs]) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        // Never created (before() failed early); the veth goes with its namespace.
      }
    }
  });

  it("moves the peer's existing neighbour entry for the address to the sender's new MAC at once", async () => {
    // The peer learns the VIP at the old MAC the ordinary way: it resolves it to send a datagram.
    sh('ip', 'netns', 'exec', peerNs, process.execPath, '-e', `const s=require('dgram').createSocket('udp4');s.send('x',9,'${vip}',()=>s.close())`);
    await until(() => peerEntry()?.lladdr === oldMac, 3000, 'the peer to resolve the VIP');
    // The address moves to another MAC (as the backup's NIC would have); nobody says so yet.
    sh('ip', '-n', senderNs, 'link', 'set', senderDev, 'address', newMac);
    await new Promise((r) => setTimeout(r, 100));
    expect(peerEntry()?.lladdr, 'nothing announced the move yet').to.equal(oldMac);
    const out = sh('ip', 'netns', 'exec', senderNs, process.execPath, CHILD, senderDev, vip, '1');
    expect(JSON.parse(out.trim())).to.deep.equal({ ok: true });
    await until(() => peerEntry()?.lladdr === newMac, 1000, 'the peer to take the new MAC');
    // Linux takes a gratuitous request as a hint, not a confirmation (arp_process: STALE).
    expect(peerEntry()?.state).to.deep.equal(['STALE']);
  });

  it('fails with FTCP_ERR_NO_SUCH_DEVICE for a device of another namespace', () => {
    // The peer's device does not exist in the sender's namespace.
    let out = '';
    try {
      sh('ip', 'netns', 'exec', senderNs, process.execPath, CHILD, peerDev, vip, '1');
    } catch (err) {
      out = String((err as { stdout?: string }).stdout ?? '');
    }
    expect(JSON.parse(out.trim()).code).to.equal(SswErrorCode.NO_SUCH_DEVICE);
  });
});

describe('sendGratuitousArp input checks', () => {
  it('fails with FTCP_ERR_NO_SUCH_DEVICE when the device does not exist', async () => {
    expect(await codeOf(sendGratuitousArp('ftcp-nodev0', '10.0.0.1'))).to.equal(SswErrorCode.NO_SUCH_DEVICE);
    expect(await codeOf(sendGratuitousArp('a-name-longer-than-ifnamsiz', '10.0.0.1'))).to.equal(SswErrorCode.NO_SUCH_DEVICE);
  });

  it('refuses a device that is not Ethernet with FTCP_ERR_BAD_CONFIG', async () => {
    expect(await codeOf(sendGratuitousArp('lo', '127.0.0.1'))).to.equal(SswErrorCode.BAD_CONFIG);
  });

  it('refuses an address that is not a dotted quad with FTCP_ERR_BAD_ADDRESS', async () => {
    expect(await codeOf(sendGratuitousArp('lo', '10.0.0'))).to.equal(SswErrorCode.BAD_ADDRESS);
  });

  const badOptions: Array<[string, GratuitousArpOptions]> = [
    ['a count of 0', { count: 0 }],
    ['a fractional count', { count: 1.5 }],
    ['a negative interval', { intervalMs: -1 }],
  ];
  for (const [what, opts] of badOptions) {
    it(`refuses ${what} with FTCP_ERR_BAD_CONFIG`, async () => {
      expect(await codeOf(sendGratuitousArp('lo', '127.0.0.1', opts))).to.equal(SswErrorCode.BAD_CONFIG);
    });
  }
});
