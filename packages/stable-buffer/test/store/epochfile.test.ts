import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../../src/errors.js';
import { readEpoch, writeEpoch } from '../../src/store/epochfile.js';

describe('epoch file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'ftcp-epoch-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads epoch 0 and no owner from a new directory', () => {
    expect(readEpoch(dir)).to.deep.equal({ epoch: 0, owner: '' });
  });

  it('reads back what it wrote and leaves no temporary file', () => {
    writeEpoch(dir, { epoch: 7, owner: 'backup-b' });
    expect(readEpoch(dir)).to.deep.equal({ epoch: 7, owner: 'backup-b' });
    expect(() => readFileSync(join(dir, 'epoch.json.tmp'))).to.throw();
  });

  it('refuses a corrupt epoch file with a store error rather than starting at epoch 0', () => {
    writeFileSync(join(dir, 'epoch.json'), '{"epoch":-1}');
    expect(() => readEpoch(dir)).to.throw().with.property('code', ErrorCode.STORE);
    writeFileSync(join(dir, 'epoch.json'), '{"epo');
    expect(() => readEpoch(dir)).to.throw().with.property('code', ErrorCode.STORE);
  });
});

describe('data directory lock', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'ftcp-lock-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a second store on a directory whose owner is alive', async () => {
    const { Store } = await import('../../src/store/store.js');
    const a = await Store.open({ dataDir: dir, durability: 'memory', maxLogBytes: 1e9 });
    // This process owns it; pretend another live process does (pid 1 always exists).
    writeFileSync(join(dir, 'buffer.lock'), '1\n');
    try {
      await Store.open({ dataDir: dir, durability: 'memory', maxLogBytes: 1e9 });
      expect.fail('opened twice');
    } catch (err) {
      expect(err).to.have.property('code', ErrorCode.DATA_DIR_IN_USE);
    }
    writeFileSync(join(dir, 'buffer.lock'), `${process.pid}\n`);
    await a.close();
    expect(() => readFileSync(join(dir, 'buffer.lock'))).to.throw();
  });

  it('takes over the lock of an owner that is gone', async () => {
    const { Store } = await import('../../src/store/store.js');
    writeFileSync(join(dir, 'buffer.lock'), '2147483000\n');
    const s = await Store.open({ dataDir: dir, durability: 'memory', maxLogBytes: 1e9 });
    expect(readFileSync(join(dir, 'buffer.lock'), 'utf8').trim()).to.equal(String(process.pid));
    await s.close();
  });
});
