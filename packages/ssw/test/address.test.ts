import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isFtcpError } from '@ftcp/stable-buffer';
import { addLocalAddress } from '../src/address.js';
import { SswErrorCode } from '../src/errors.js';

const CHILD = fileURLToPath(new URL('./support/address-child.js', import.meta.url));
const isRoot = process.getuid?.() === 0;

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
}

describe('addLocalAddress and removeLocalAddress (root, a network namespace of the test)', function () {
  this.timeout(20_000);
  const ns = `ftcp-addr-${process.pid % 100000}`;
  const dev = `fad${process.pid % 100000}`;
  const vip = `10.${200 + (process.pid % 50)}.${process.pid % 250}.9`;

  /** What `ip` shows on the device: the addresses with their prefix lengths. */
  function addresses(): string[] {
    const out = JSON.parse(sh('ip', '-n', ns, '-j', 'addr', 'show', 'dev', dev)) as { addr_info: { family: string; local: string; prefixlen: number }[] }[];
    return (out[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  }

  function child(op: 'add' | 'delete', ifname = dev): { ok?: boolean; code?: string } {
    try {
      return JSON.parse(sh('ip', 'netns', 'exec', ns, process.execPath, CHILD, op, ifname, vip).trim());
    } catch (err) {
      return JSON.parse(String((err as { stdout?: string }).stdout ?? '').trim());
    }
  }

  before(function () {
    if (!isRoot) this.skip();
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`);
    sh('ip', '-n', ns, 'link', 'set', dev, 'up');
  });

  after(() => {
    if (!isRoot) return;
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      // Never created.
    }
  });

  it('adds the address as a /32 the kernel reports, and adding it again changes nothing', () => {
    expect(child('add')).to.deep.equal({ ok: true });
    expect(addresses()).to.deep.equal([`${vip}/32`]);
    expect(child('add')).to.deep.equal({ ok: true });
    expect(addresses()).to.deep.equal([`${vip}/32`]);
  });

  it('removes it, and removing an address that is not there succeeds', () => {
    expect(child('delete')).to.deep.equal({ ok: true });
    expect(addresses()).to.deep.equal([]);
    expect(child('delete')).to.deep.equal({ ok: true });
  });

  it('removes the address whatever prefix it was given', () => {
    sh('ip', '-n', ns, 'addr', 'add', `${vip}/24`, 'dev', dev);
    expect(child('delete')).to.deep.equal({ ok: true });
    expect(addresses()).to.deep.equal([]);
  });

  it('fails with FTCP_ERR_NO_SUCH_DEVICE for a device of another namespace', () => {
    expect(child('add', 'lan-nowhere').code).to.equal(SswErrorCode.NO_SUCH_DEVICE);
  });
});

describe('addLocalAddress input checks', () => {
  it('refuses an address that is not a dotted quad with FTCP_ERR_BAD_ADDRESS', () => {
    try {
      addLocalAddress('lo', '10.0.0');
      expect.fail('accepted a bad address');
    } catch (err) {
      expect(isFtcpError(err, SswErrorCode.BAD_ADDRESS)).to.equal(true);
    }
  });
});
