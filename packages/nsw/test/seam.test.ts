import { expect } from 'chai';
import { CallWriter, ReplicaFeed } from '@ftcp/stable-buffer';
import type { RecordSink, RecordSource } from '../src/sink.js';

// Compile-time: the stable buffer's writer and feed fit the agent's seam.
// If either drifts, this file stops compiling.
type Fits<T, U> = T extends U ? true : false;
const writerFits: Fits<CallWriter, RecordSink> = true;
const feedFits: Fits<ReplicaFeed, RecordSource> = true;

describe('the record seam', () => {
  it('is satisfied by the stable buffer\'s CallWriter (record) and ReplicaFeed (playback)', () => {
    expect(writerFits && feedFits).to.equal(true);
    expect(CallWriter.prototype.append).to.be.a('function');
    expect(ReplicaFeed.prototype.read).to.be.a('function');
  });
});
