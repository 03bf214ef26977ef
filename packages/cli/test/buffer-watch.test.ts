import { expect } from 'chai';
import { watchBuffer } from '../src/runtime/buffer-watch.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Blocks this process's event loop, as a loaded host does. */
function stall(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe('watchBuffer', () => {
  it('declares the buffer lost after the failure timeout of silence', async () => {
    let silent = 0;
    const lost: number[] = [];
    const stop = watchBuffer({ silentForMs: () => silent, ping: async () => 0 }, 30, (ms) => lost.push(ms));
    try {
      await sleep(20);
      expect(lost).to.deep.equal([]);
      silent = 100;
      await sleep(40);
      expect(lost).to.deep.equal([100]);
    } finally {
      stop();
    }
  });

  it('decides nothing on a tick that came late because this process stalled: it pings and lets the next tick decide', async () => {
    let silent = 0;
    let lostCalls = 0;
    let pingsBeforeLost = 0;
    const client = {
      silentForMs: () => silent,
      ping: async () => {
        if (lostCalls === 0) pingsBeforeLost++;
        return 0;
      },
    };
    const stop = watchBuffer(client, 30, () => lostCalls++);
    try {
      await sleep(20);
      silent = 500; // what a stalled process measures: its own stall counts as the buffer's silence
      stall(100);
      await sleep(60);
      expect(pingsBeforeLost, 'the late tick pinged first').to.be.greaterThan(0);
      expect(lostCalls).to.equal(1);
    } finally {
      stop();
    }
  });
});
