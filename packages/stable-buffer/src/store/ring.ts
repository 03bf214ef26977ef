/**
 * The most recent records by LSN in a fixed-size ring: O(1) to add and to
 * look up, so serving live subscribers costs nothing per write.
 */
export class RecordRing {
  private readonly slots: (Buffer | undefined)[];
  /** LSN of the oldest record held; `end` is one past the newest. */
  private start = 0;
  private end = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<Buffer | undefined>(capacity);
  }

  /** Adds the record with the next LSN; a gap (records not seen) restarts the ring. */
  push(lsn: number, record: Buffer): void {
    if (lsn !== this.end) {
      this.start = lsn;
      this.end = lsn;
    }
    this.slots[lsn % this.capacity] = record;
    this.end = lsn + 1;
    if (this.end - this.start > this.capacity) this.start = this.end - this.capacity;
  }

  has(lsn: number): boolean {
    return lsn >= this.start && lsn < this.end;
  }

  /** The record at `lsn`; only after {@link has} said yes. */
  get(lsn: number): Buffer {
    return this.slots[lsn % this.capacity]!;
  }
}
