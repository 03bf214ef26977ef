/**
 * Replicated connections as a playback agent sees them (FT-TCP 3.7): the
 * client's bytes come from the buffer (the SSW logged them as segments), and
 * what the replica sends is kept in a per-connection send buffer, trimmed by
 * the client's acknowledgements, so a promoted backup can resend what the
 * client never got.
 */
import { ErrorCode, FtcpError } from './errors.js';

/** A client's address as the primary's `accept` saw it. */
export interface PeerAddress {
  family: 'ipv4' | 'ipv6';
  /** Dotted quad or RFC 5952 text. */
  address: string;
  port: number;
}

/**
 * Where a replica's client bytes come from: on a backup, the stable buffer's
 * `ReplicaFeed.readInstream` for the connection whose client is `peer`.
 */
export interface InstreamSource {
  /**
   * Exactly `length` client bytes of the connection to `peer`, from byte
   * `offset` of its instream (0 is the first byte after the SYN), once they
   * are stable. Rejects with {@link ErrorCode.CLOSED} when `signal` aborts.
   */
  readInstream(peer: PeerAddress, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
}

/** A replicated connection's state in a playback agent. */
export interface ReplicatedConnection {
  /** The key the shim names the connection by: the FNV-1a hash of its peer's sockaddr. */
  key: bigint;
  peer: PeerAddress;
  /** Client bytes the replica has read so far. */
  instreamOffset: number;
  /** Bytes the replica has sent so far. */
  sentOffset: number;
  /** Outstream offset the client acknowledged; the send buffer starts here. */
  ackedOffset: number;
  /** Sent but not acknowledged: what a promoted backup must resend. */
  unacked: Buffer;
}

/**
 * Decodes a Linux `sockaddr_in` or `sockaddr_in6` as the shim recorded it
 * (family in host order, port and address in network order). Throws an
 * {@link FtcpError} (MALFORMED_FRAME) for anything else.
 */
export function decodeSockaddr(buf: Buffer): PeerAddress {
  if (buf.length >= 16 && buf.readUInt16LE(0) === 2) {
    return { family: 'ipv4', address: [...buf.subarray(4, 8)].join('.'), port: buf.readUInt16BE(2) };
  }
  if (buf.length >= 28 && buf.readUInt16LE(0) === 10) {
    const groups: string[] = [];
    for (let i = 8; i < 24; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
    return { family: 'ipv6', address: compressIpv6(groups), port: buf.readUInt16BE(2) };
  }
  throw new FtcpError(ErrorCode.MALFORMED_FRAME, `peer address of ${buf.length} bytes is neither IPv4 nor IPv6`);
}

/** RFC 5952: the longest run of two or more zero groups becomes "::". */
function compressIpv6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** One connection's instream position and send buffer, kept by a playback agent. */
export class ConnectionState {
  instreamOffset = 0;
  /**
   * Playback: client bytes the agent has read from the instream so far, for
   * reads it sent ahead of the replica (at or past {@link instreamOffset}),
   * and the stream it read them for.
   */
  fetched = 0;
  fetchedBy: string | null = null;
  sentOffset = 0;
  ackedOffset = 0;
  private chunks: Buffer[] = [];
  /** The client's highest acknowledgement, which may be ahead of what this (lagging) replica sent so far. */
  private clientAck = 0;

  constructor(
    readonly key: bigint,
    readonly peer: PeerAddress,
  ) {}

  /**
   * Keeps bytes the replica sent (FT-TCP 3.7: "queues the data ... in a send
   * buffer"), less what the client already acknowledged: a replica may lag
   * behind the client's acknowledgements of the primary's bytes.
   */
  sent(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // A view of a larger buffer (the agent's frame of a DONE) is kept as it is when it is most of that buffer, so
    // a replica's bulk writes are not copied again; a small one is copied, so it does not hold the rest in memory.
    this.chunks.push(bytes.length * 4 >= bytes.buffer.byteLength ? bytes : Buffer.from(bytes));
    this.sentOffset += bytes.length;
    if (this.clientAck > this.ackedOffset) this.trim();
  }

  /** Drops what the client acknowledged; an offset past what was sent is kept and applied as the replica sends. */
  acked(offset: number): void {
    if (offset > this.clientAck) this.clientAck = offset;
    this.trim();
  }

  private trim(): void {
    const to = Math.min(this.clientAck, this.sentOffset);
    let drop = to - this.ackedOffset;
    if (drop <= 0) return;
    this.ackedOffset = to;
    while (drop > 0 && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      if (first.length <= drop) {
        drop -= first.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = first.subarray(drop);
        drop = 0;
      }
    }
  }

  /** A copy of the state, for status output and for the promotion that resends `unacked`. */
  snapshot(): ReplicatedConnection {
    return {
      key: this.key,
      peer: this.peer,
      instreamOffset: this.instreamOffset,
      sentOffset: this.sentOffset,
      ackedOffset: this.ackedOffset,
      unacked: Buffer.concat(this.chunks),
    };
  }
}
