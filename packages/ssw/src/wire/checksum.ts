/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * A "sum" here is an unfolded ones-complement accumulator: a non-negative
 * integer below 2^53 that {@link fold} reduces to 16 bits. A "checksum" is
 * the 16-bit value stored in a header: the complement of the folded sum.
 */

/**
 * The ones-complement sum of the big-endian 16-bit words of
 * `buf[start, end)`, added to `initial`. An odd trailing byte counts as the
 * high byte of a word padded with zero (RFC 1071 4.1). The result is
 * unfolded; pass it to {@link fold} or {@link finish}.
 */
export function onesSum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  // Byte-wise reads avoid DataView allocation; the JIT keeps this tight.
  for (; i + 1 < end; i += 2) {
    sum += ((buf[i] as number) << 8) | (buf[i + 1] as number);
  }
  if (i < end) sum += (buf[i] as number) << 8;
  return sum;
}

/**
 * Fold an unfolded sum to 16 bits with end-around carry (RFC 1071 4.1).
 * The result is in [0, 0xffff]; it is 0 only when every word summed was 0.
 */
export function fold(sum: number): number {
  // Division, not `>>> 16`: an accumulator may exceed 2^32 for jumbo data.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** Combine two sums over disjoint, even-aligned ranges (RFC 1071 2(B)). */
export function combine(a: number, b: number): number {
  return fold(a + b);
}

/** The checksum to store for a sum: the 16-bit complement of its fold. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/**
 * The IPv4 header checksum (RFC 791 3.1) of the header at
 * `buf[off, off + headerLength)`, computed as if its checksum field
 * (bytes 10-11) were zero.
 */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number, headerLength: number): number {
  const sum = onesSum(buf, off, off + 10) + onesSum(buf, off + 12, off + headerLength);
  return finish(sum);
}

/**
 * The sum of the TCP/UDP pseudo-header for IPv4 (RFC 9293 3.1): source and
 * destination address (unsigned 32-bit), zero, protocol, and the TCP length
 * in bytes (header plus data). Unfolded.
 */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (
    (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + (length >>> 16) + (length & 0xffff)
  );
}

/**
 * The full TCP checksum (RFC 9293 3.1) of the segment at
 * `buf[off, off + length)` with the given IPv4 addresses, computed as if the
 * segment's checksum field (bytes 16-17) were zero.
 */
export function tcpChecksum(buf: Uint8Array, off: number, length: number, src: number, dst: number): number {
  let sum = pseudoHeaderSum(src, dst, 6, length);
  sum += onesSum(buf, off, off + 16);
  sum += onesSum(buf, off + 18, off + length);
  return finish(sum);
}

/**
 * Update checksum `hc` after one 16-bit word changed from `m` to `m2`,
 * by RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Unlike eqn. 2 it never
 * yields the 0x0000/0xffff mismatch a full recompute would not give.
 */
export function csumUpdate16(hc: number, m: number, m2: number): number {
  return ~fold((~hc & 0xffff) + (~m & 0xffff) + (m2 & 0xffff)) & 0xffff;
}

/**
 * Update checksum `hc` after an aligned 32-bit field changed from `m` to
 * `m2` (both unsigned): RFC 1624 eqn. 3 applied to both halves at once.
 */
export function csumUpdate32(hc: number, m: number, m2: number): number {
  const sum =
    (~hc & 0xffff) + (~(m >>> 16) & 0xffff) + (~m & 0xffff) + (m2 >>> 16) + (m2 & 0xffff);
  return ~fold(sum) & 0xffff;
}

/**
 * Update checksum `hc` after a run of aligned words whose sum was `oldSum`
 * now sums to `newSum` (both from {@link onesSum} over the same range).
 * RFC 1624 eqn. 3 for many words: ~m of a sum is the sum of the ~m's.
 */
export function csumReplace(hc: number, oldSum: number, newSum: number): number {
  return ~fold((~hc & 0xffff) + (~fold(oldSum) & 0xffff) + fold(newSum)) & 0xffff;
}

/**
 * Update a partial checksum (CHECKSUM_PARTIAL: the field holds the folded,
 * uncomplemented pseudo-header sum; the NIC or kernel adds the segment later)
 * after a pseudo-header word changed from `m` to `m2`. A plain
 * ones-complement replacement, no complement of the field.
 */
export function partialUpdate16(field: number, m: number, m2: number): number {
  return fold(field + (~m & 0xffff) + (m2 & 0xffff));
}
