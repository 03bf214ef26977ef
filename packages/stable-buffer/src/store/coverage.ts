/**
 * Which offsets of a stream are held, as a contiguous prefix plus sorted,
 * disjoint intervals beyond it. Used for a connection's instream (the prefix
 * end is the connection's stable offset, FT-TCP 3.10) and for a stream's call
 * numbers (the prefix end is the highest contiguous call).
 */
export interface Interval {
  start: number;
  end: number;
}

export class Coverage {
  private prefixEnd = 0;
  /** Disjoint, sorted, none touching the prefix or each other. */
  private islands: Interval[] = [];

  /** Everything below this offset is held. */
  get contiguousEnd(): number {
    return this.prefixEnd;
  }

  /** Intervals held beyond a hole, for status output. */
  get outOfOrder(): readonly Interval[] {
    return this.islands;
  }

  /** Highest offset held plus one (0 when empty). */
  get highEnd(): number {
    const last = this.islands[this.islands.length - 1];
    return last ? last.end : this.prefixEnd;
  }

  /** True when every offset in [start, end) is held. */
  covers(start: number, end: number): boolean {
    if (end <= this.prefixEnd) return true;
    for (const i of this.islands) if (i.start <= start && end <= i.end) return true;
    return false;
  }

  /**
   * Adds [start, end) and returns the pieces that were not held before, in
   * order (empty when the range is a pure duplicate).
   */
  add(start: number, end: number): Interval[] {
    const fresh = this.missing(start, end);
    for (const f of fresh) this.insert(f);
    return fresh;
  }

  /** The pieces of [start, end) not held yet, in order; changes nothing. */
  missing(start: number, end: number): Interval[] {
    if (end <= start) return [];
    const fresh: Interval[] = [];
    let cursor = Math.max(start, this.prefixEnd);
    for (const i of this.islands) {
      if (cursor >= end) break;
      if (i.end <= cursor) continue;
      if (i.start > cursor) fresh.push({ start: cursor, end: Math.min(i.start, end) });
      cursor = Math.max(cursor, i.end);
    }
    if (cursor < end) fresh.push({ start: cursor, end });
    return fresh;
  }

  /** Marks pieces returned by {@link missing} as held. */
  insert(f: Interval): void {
    if (f.start <= this.prefixEnd) {
      this.prefixEnd = Math.max(this.prefixEnd, f.end);
    } else {
      let at = 0;
      while (at < this.islands.length && this.islands[at]!.start < f.start) at++;
      this.islands.splice(at, 0, { ...f });
      // Merge with touching neighbours.
      const merged: Interval[] = [];
      for (const i of this.islands) {
        const last = merged[merged.length - 1];
        if (last && i.start <= last.end) last.end = Math.max(last.end, i.end);
        else merged.push({ ...i });
      }
      this.islands = merged;
    }
    while (this.islands.length > 0 && this.islands[0]!.start <= this.prefixEnd) {
      this.prefixEnd = Math.max(this.prefixEnd, this.islands.shift()!.end);
    }
  }
}
