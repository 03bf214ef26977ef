import { expect } from 'chai';
import { statusLines, type BufferStatus } from '../src/commands/status.js';

/** A buffer's status with the given node reports and nothing else of note. */
function bufferStatus(nodes: BufferStatus['nodes']): BufferStatus {
  return {
    epoch: 2,
    owner: 'a',
    writerAttached: true,
    durability: 'memory',
    headLsn: 10,
    retainedBytes: 100,
    detector: { state: 'healthy', silentForMs: 3, probes: 7, misses: 0 },
    connections: [],
    backups: [],
    nodes,
    counters: { errors: {}, failuresDeclared: 0 },
  };
}

const primaryReport = {
  mode: 'record',
  epoch: 2,
  connections: 2,
  outputCommitStallMs: 4,
  outputCommitStallMaxMs: 9,
  stableLagBytes: 26,
  stableLag: [
    { connId: 4294967298, client: '10.0.0.1:40001', lagBytes: 26, clientAcked: 0 },
    { connId: 4294967297, client: '10.0.0.1:40000', lagBytes: 0, clientAcked: 5 },
  ],
};

/** The lines between a node's line and the next section. */
function nodeSection(lines: string[]): string[] {
  return lines.slice(lines.indexOf('nodes:') + 1, lines.indexOf('backups:'));
}

describe('statusLines', () => {
  it("prints a node's scalar fields on its line, the stall and the total stable lag among them", () => {
    const [line] = nodeSection(statusLines(bufferStatus([{ node: 'a', role: 'primary', ageMs: 120, report: primaryReport }])));
    expect(line).to.equal('  a [primary] 120 ms ago: mode=record epoch=2 connections=2 outputCommitStallMs=4 outputCommitStallMaxMs=9 stableLagBytes=26');
  });

  it('prints one line per connection a node lists, below the node, with its stable lag and what its client acknowledged', () => {
    const section = nodeSection(statusLines(bufferStatus([{ node: 'a', role: 'primary', ageMs: 120, report: primaryReport }])));
    expect(section.slice(1)).to.deep.equal([
      '    conn 4294967298 10.0.0.1:40001: 26 bytes beyond stable-seq, client acked 0',
      '    conn 4294967297 10.0.0.1:40000: 0 bytes beyond stable-seq, client acked 5',
    ]);
  });

  it('says how many connections a node left out of its list', () => {
    const report = { ...primaryReport, connections: 40 };
    const section = nodeSection(statusLines(bufferStatus([{ node: 'a', role: 'primary', ageMs: 1, report }])));
    expect(section.at(-1)).to.equal('    (38 more connections, lagging least, not listed)');
  });

  it('adds nothing below a node that lists no connections, and says so of a list it cannot read instead of failing', () => {
    const section = nodeSection(
      statusLines(
        bufferStatus([
          { node: 'b', role: 'backup', ageMs: 5, report: { mode: 'playback', epoch: 1 } },
          { node: 'c', role: 'primary', ageMs: 5, report: { mode: 'record', stableLag: [{ connId: 'x' }] } },
        ]),
      ),
    );
    expect(section).to.deep.equal(['  b [backup] 5 ms ago: mode=playback epoch=1', '  c [primary] 5 ms ago: mode=record', '    (stable lag per connection: unreadable)']);
  });
});
