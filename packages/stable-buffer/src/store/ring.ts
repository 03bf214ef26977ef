/**
 * The most recent records by LSN in a fixed-size ring: O(1) to add and to
 * look up, so serving live subscribers costs nothing per write.
 */
export class RecordRing {
  private readonly slots: (Buffer | undefined)[];
  /** LSN of the oldest record held; `end` is one past the newest. */
  private start = 0;
  private end = 0;

  private bytes = 0;

  /** Holds at most `capacity` records and about `maxBytes` of them (always the newest one). */
  constructor(
    readonly capacity: number,
    readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {
    this.slots = new Array<Buffer | undefined>(capacity);
  }

  /** Adds the record with the next LSN; a gap (records not seen) restarts the ring. */
  push(lsn: number, record: Buffer): void {
    if (lsn !== this.end) this.clear(lsn);
    if (this.end - this.start === this.capacity) this.dropOldest();
    this.slots[lsn % this.capacity] = record;
    this.bytes += record.length;
    this.end = lsn + 1;
    while (this.bytes > this.maxBytes && this.end - this.start > 1) this.dropOldest();
  }

  private dropOldest(): void {
    const i = this.start % this.capacity;
    this.bytes -= this.slots[i]?.length ?? 0;
    this.slots[i] = undefined;
    this.start++;
  }

  private clear(at: number): void {
    this.slots.fill(undefined);
    this.bytes = 0;
    this.start = at;
    this.end = at;
  }

  has(lsn: number): boolean {
    return lsn >= this.start && lsn < this.end;
  }

  /** The record at `lsn`; only after {@link has} said yes. */
  get(lsn: number): Buffer {
    return this.slots[lsn % this.capacity]!;
  }
}
