import { expect } from 'chai';
import { Detector, type Clock } from '../../src/detector/detector.js';

/** A clock that moves only when the test says so, firing due timers in order. */
class ManualClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  /** This process stalls for `ms`: no timer fires meanwhile; then the due ones fire, late. */
  stall(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

function setup(probeIntervalMs = 10, failureTimeoutMs = 30) {
  const clock = new ManualClock();
  const events: string[] = [];
  const d = new Detector({
    probeIntervalMs,
    failureTimeoutMs,
    clock,
    onProbe: () => events.push(`probe@${clock.t}`),
    onFailed: (silent) => events.push(`failed@${clock.t}/${silent}`),
    onHeardAfterFailure: (since) => events.push(`heard-after-failure@${clock.t}/${since}`),
  });
  return { clock, events, d };
}

describe('Detector', () => {
  it('probes again instead of declaring failure when its own timer fired late, and declares it after a second silent timeout', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(10); // probe at 10, due to fail at 40
    clock.stall(100); // the buffer's loop stalls: the failure timer fires at 110
    expect(events).to.deep.equal(['probe@10', 'probe@110']);
    expect(d.reprobes).to.equal(1);
    clock.advance(29);
    expect(d.state).to.equal('probing');
    clock.advance(1);
    expect(events.at(-1)).to.equal('failed@140/140');
  });

  it('keeps a primary whose answer was read after the buffer stalled', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(10);
    clock.stall(100);
    d.heard(); // the answer that waited in the socket
    clock.advance(5);
    expect(d.state).to.equal('watching');
    expect(events).to.deep.equal(['probe@10', 'probe@110']);
  });

  it('never probes a primary that keeps talking', () => {
    const { clock, events, d } = setup();
    d.start();
    for (let i = 0; i < 100; i++) {
      clock.advance(5);
      d.heard();
    }
    expect(events).to.deep.equal([]);
    expect(d.state).to.equal('watching');
  });

  it('probes after the probe interval of silence and declares failure after the timeout', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(100);
    expect(events).to.deep.equal(['probe@10', 'failed@40/40']);
    expect(d.state).to.equal('failed');
  });

  it('declares a primary failed within probe interval plus failure timeout of its last message', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(7);
    d.heard();
    clock.advance(200);
    expect(events.at(-1)).to.equal('failed@47/40');
  });

  it('keeps the bound after a probe was answered', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(15);
    d.heard();
    clock.advance(200);
    expect(events).to.deep.equal(['probe@10', 'probe@25', 'failed@55/40']);
  });

  it('goes back to watching when the probe is answered', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(15);
    expect(events).to.deep.equal(['probe@10']);
    d.heard();
    clock.advance(20);
    expect(d.state).to.equal('probing');
    expect(events).to.deep.equal(['probe@10', 'probe@25']);
    d.heard();
    clock.advance(29);
    expect(events).to.not.include.members(['failed@55/30']);
    expect(d.state).to.not.equal('failed');
  });

  it('watches a primary again when it speaks after being declared failed, and can declare it failed a second time', () => {
    const { clock, events, d } = setup(10, 30);
    d.start();
    clock.advance(40);
    expect(d.state).to.equal('failed');
    clock.advance(122);
    d.heard();
    expect(d.state).to.equal('watching');
    expect(d.falseVerdicts).to.equal(1);
    clock.advance(200);
    expect(events).to.deep.equal(['probe@10', 'failed@40/40', 'heard-after-failure@162/122', 'probe@172', 'failed@202/40']);
  });

  it('does nothing after stop', () => {
    const { clock, events, d } = setup();
    d.start();
    d.stop();
    clock.advance(1000);
    expect(events).to.deep.equal([]);
    expect(d.state).to.equal('idle');
  });
});
