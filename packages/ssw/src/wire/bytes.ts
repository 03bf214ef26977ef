/**
 * Big-endian reads and writes on plain byte arrays (network byte order,
 * RFC 791 appendix B). Callers check bounds first; these do not.
 */

/** The unsigned 16-bit big-endian value at `off`. */
export function readU16(buf: Uint8Array, off: number): number {
  return ((buf[off] as number) << 8) | (buf[off + 1] as number);
}

/** The unsigned 32-bit big-endian value at `off`. */
export function readU32(buf: Uint8Array, off: number): number {
  return (
    (((buf[off] as number) << 24) |
      ((buf[off + 1] as number) << 16) |
      ((buf[off + 2] as number) << 8) |
      (buf[off + 3] as number)) >>>
    0
  );
}

/** Store the low 16 bits of `v` big-endian at `off`. */
export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

/** Store `v` as an unsigned 32-bit big-endian value at `off`. */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
