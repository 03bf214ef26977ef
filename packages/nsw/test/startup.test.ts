import { expect } from 'chai';
import { join } from 'node:path';
import { NswAgent, shimPath } from '../src/index.js';
import { MemoryRecordSink } from '../src/sink.js';
import { compileC, quiet, run, shimEnv, tempDir } from './helpers.js';

describe('the shim at start-up', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  let program: string;
  before(() => {
    tmp = tempDir('startup');
    program = compileC('ownmalloc', tmp.dir, ['-lpthread']);
  });
  after(() => tmp.remove());

  for (const mode of ['record', undefined] as const) {
    it(`lets a program whose own malloc reads the clock start ${mode ? 'in record mode' : 'with the shim off'} (jemalloc, as in redis-server)`, async () => {
      const sink = new MemoryRecordSink();
      const agent = new NswAgent({ socketPath: join(tmp.dir, `a-${mode ?? 'off'}.sock`), mode: 'record', sink });
      await agent.listen();
      try {
        const r = await run(program, [], shimEnv(shimPath(), mode, join(tmp.dir, `a-${mode ?? 'off'}.sock`), 'own'), 8000);
        expect(r.signal, `hung or crashed; stderr: ${r.stderr}`).to.equal(null);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.equal('ok 1\n');
        if (mode === 'record') {
          await quiet(agent);
          expect(sink.streamNames()).to.deep.equal(['own']);
        }
      } finally {
        await agent.close();
      }
    });
  }
});
