/**
 * Sequence-number arithmetic modulo 2^32 (RFC 9293 3.4, RFC 1982).
 *
 * Every comparison or sum of raw 32-bit sequence numbers (and of TCP
 * timestamps, which wrap the same way, RFC 7323 5.2) lives in this module and
 * nowhere else. A {@link SeqNum} is an unsigned 32-bit integer carried in a JS
 * number; a {@link SeqDelta} is a signed 32-bit distance between two of them.
 */

declare const seqNumBrand: unique symbol;
declare const seqDeltaBrand: unique symbol;

/** A TCP sequence number: an integer in [0, 2^32). Build one with {@link seq}. */
export type SeqNum = number & { readonly [seqNumBrand]: true };

/** A signed distance between sequence numbers: an integer in [-2^31, 2^31). */
export type SeqDelta = number & { readonly [seqDeltaBrand]: true };

/** 2^32, the size of the sequence space. */
const SPACE = 4294967296;

/**
 * Brand an integer as a {@link SeqNum}, reducing it modulo 2^32 (so -1
 * becomes 0xffffffff). Non-integers are truncated by the `>>> 0`.
 */
export function seq(n: number): SeqNum {
  return (n >>> 0) as SeqNum;
}

/**
 * Brand an integer as a {@link SeqDelta}, reducing it to the signed 32-bit
 * range (so 0xffffffff becomes -1).
 */
export function seqDelta(n: number): SeqDelta {
  return (n | 0) as SeqDelta;
}

/**
 * True when `a` comes before `b` in sequence space: the signed 32-bit
 * distance `a - b` is negative (RFC 9293 3.4). Two numbers exactly 2^31
 * apart are ambiguous; this treats `a` as before `b` when `a - b` is -2^31.
 */
export function seqLt(a: SeqNum, b: SeqNum): boolean {
  return ((a - b) | 0) < 0;
}

/** True when `a` is before or equal to `b` in sequence space. */
export function seqLe(a: SeqNum, b: SeqNum): boolean {
  return !seqLt(b, a);
}

/** True when `a` comes after `b` in sequence space. */
export function seqGt(a: SeqNum, b: SeqNum): boolean {
  return seqLt(b, a);
}

/** True when `a` is after or equal to `b` in sequence space. */
export function seqGe(a: SeqNum, b: SeqNum): boolean {
  return !seqLt(a, b);
}

/** The later of `a` and `b` in sequence space. */
export function seqMax(a: SeqNum, b: SeqNum): SeqNum {
  return seqLt(a, b) ? b : a;
}

/** The earlier of `a` and `b` in sequence space. */
export function seqMin(a: SeqNum, b: SeqNum): SeqNum {
  return seqLt(a, b) ? a : b;
}

/**
 * `a + d` modulo 2^32. `d` may be any integer with |a + d| < 2^53 (a
 * {@link SeqDelta}, a byte count, a negative number to subtract).
 */
export function seqAdd(a: SeqNum, d: number): SeqNum {
  return ((a + d) >>> 0) as SeqNum;
}

/**
 * The signed distance `a - b` as a {@link SeqDelta}: positive when `a` is
 * after `b`. Exact only when the true distance is within [-2^31, 2^31).
 */
export function seqDiff(a: SeqNum, b: SeqNum): SeqDelta {
  return ((a - b) | 0) as SeqDelta;
}

/**
 * The unsigned distance from `b` forward to `a`, in [0, 2^32). Use it for
 * lengths of ranges known to run forward from `b` (window right edges).
 */
export function seqForward(a: SeqNum, b: SeqNum): number {
  return (a - b) >>> 0;
}

/**
 * True when `x` lies in the half-open range [lo, hi) walking forward from
 * `lo` (RFC 9293 3.10.7.4 acceptability tests). An empty range (`lo == hi`)
 * contains nothing.
 */
export function seqInRange(x: SeqNum, lo: SeqNum, hi: SeqNum): boolean {
  return ((x - lo) >>> 0) < ((hi - lo) >>> 0);
}

/**
 * The sequence number of stream offset `offset` in a stream whose initial
 * sequence number is `isn`: offset 0 is the first data byte, `isn + 1`
 * (the SYN takes `isn` itself, RFC 9293 3.4.1). `offset` is a non-negative
 * integer up to 2^53 - 1.
 */
export function offsetToSeq(offset: number, isn: SeqNum): SeqNum {
  return ((isn + 1 + (offset % SPACE)) >>> 0) as SeqNum;
}

/**
 * The 64-bit stream offset of sequence number `s`, choosing among the
 * offsets that map to `s` the one nearest to `near` (a recently known
 * offset, for example the highest offset seen so far). Exact while the true
 * offset is within 2^31 bytes of `near`. The result is -1 for the SYN's own
 * sequence number when `near` is small, and may be negative for numbers
 * before the ISN; callers reject those.
 */
export function seqToOffset(s: SeqNum, isn: SeqNum, near: number): number {
  return near + seqDiff(s, offsetToSeq(near, isn));
}

/**
 * `a + d` modulo 2^32 for TCP timestamp values (RFC 7323 5.2), which wrap
 * like sequence numbers but are not sequence numbers.
 */
export function u32Add(a: number, d: number): number {
  return (a + d) >>> 0;
}

/**
 * The signed 32-bit distance `a - b` between two timestamp values or other
 * wrapping 32-bit counters (RFC 7323 5.2 compares TSvals this way).
 */
export function u32Diff(a: number, b: number): number {
  return (a - b) | 0;
}

/**
 * The later of two timestamp values (RFC 7323 5.2: `a` is later when it is
 * ahead of `b` by less than 2^31), for high-water marks of TSvals and TSecrs.
 */
export function u32Max(a: number, b: number): number {
  return u32Diff(a, b) < 0 ? b >>> 0 : a >>> 0;
}
