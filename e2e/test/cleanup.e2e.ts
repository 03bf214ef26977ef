import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { cleanupStale, nsList, pidAlive } from '../src/index.js';

const INDEX = new URL('../src/index.js', import.meta.url).href;

// A run that builds a bed, starts a process in it, says so and waits forever.
const CHILD = `
import { Testbed } from ${JSON.stringify(INDEX)};
const bed = await Testbed.create();
const sleeper = bed.spawn('client', 'sleep', ['30']);
console.log(JSON.stringify({ tag: bed.tag, namespaces: bed.namespaces, sleeper: sleeper.pid }));
setInterval(() => {}, 1000);
`;

interface Started {
  readonly child: ChildProcess;
  readonly info: { tag: string; namespaces: string[]; sleeper: number };
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startRun(): Promise<Started> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child run did not start a bed in 8 s: ${stderr}`)), 8000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    void exit.then(() => reject(new Error(`child run exited early: ${stderr}`)));
  });
  return { child, info: JSON.parse(line) as Started['info'], exit };
}

describe('cleanup when a test run dies', function () {
  it('removes the bed of a run interrupted with SIGINT, processes included', async function () {
    this.timeout(15_000);
    const run = await startRun();
    expect(await nsList()).to.include.members(run.info.namespaces);
    run.child.kill('SIGINT');
    const status = await run.exit;
    expect(status.code).to.equal(130);
    expect((await nsList()).filter((n) => n.includes(run.info.tag))).to.deep.equal([]);
    expect(pidAlive(run.info.sleeper)).to.equal(false);
  });

  it('leaves the bed of a SIGKILLed run to cleanupStale, which removes it and kills what ran in it', async function () {
    this.timeout(15_000);
    const run = await startRun();
    run.child.kill('SIGKILL');
    await run.exit;
    // No hook can run on SIGKILL: the namespaces and the sleeper outlive it.
    expect(await nsList()).to.include.members(run.info.namespaces);
    expect(pidAlive(run.info.sleeper)).to.equal(true);
    const removed = await cleanupStale();
    expect(removed).to.include.members(run.info.namespaces);
    expect((await nsList()).filter((n) => n.includes(run.info.tag))).to.deep.equal([]);
    // The sleeper was our grandchild's child; init reaps it, give it a moment.
    for (let i = 0; i < 50 && pidAlive(run.info.sleeper); i++) await new Promise((r) => setTimeout(r, 20));
    expect(pidAlive(run.info.sleeper)).to.equal(false);
  });
});
