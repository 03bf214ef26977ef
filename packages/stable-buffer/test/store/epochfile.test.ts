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
