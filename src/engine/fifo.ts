/**
 * An expiry queue: values by id, in insertion order, with O(1) lookup, O(1) removal of the
 * oldest and amortised O(1) expiry. Used where one time-to-live means insertion order is expiry
 * order (admission ids per rule window, request ids).
 *
 * The order is kept in an array with a head index rather than by iterating a Map from its
 * start: V8 leaves deleted Map entries in place until the table is rebuilt, so a Map used as a
 * queue (delete the first, iterate from the start again) walks every deleted entry each time
 * and slows to O(n) per operation once it is full.
 */
export interface Expiring {
  expiresAt: number;
}

export class ExpiryQueue<V extends Expiring> {
  private readonly byId = new Map<string, V>();
  /** Insertion order; a slot is live while `byId` still maps its id to its value. */
  private order: [string, V][] = [];
  private head = 0;

  get size(): number {
    return this.byId.size;
  }

  get(id: string): V | undefined {
    return this.byId.get(id);
  }

  /** Add a value (an id already held is replaced and moves to the end). */
  push(id: string, v: V): void {
    this.byId.set(id, v);
    this.order.push([id, v]);
    // Slots of removed or replaced values pile up when nothing is shifted: rebuild now and then.
    if (this.order.length - this.head > 2 * this.byId.size + 1024) {
      this.order = [...this.byId];
      this.head = 0;
    }
  }

  /** Remove one id (its slot in the order is skipped later). */
  delete(id: string): boolean {
    return this.byId.delete(id);
  }

  /** The oldest value still held, without removing it. */
  peek(): V | undefined {
    this.skipRemoved();
    return this.head < this.order.length ? this.order[this.head][1] : undefined;
  }

  /** Remove the oldest value; returns it. */
  shift(): V | undefined {
    this.skipRemoved();
    if (this.head >= this.order.length) return undefined;
    const [id, v] = this.order[this.head++];
    this.byId.delete(id);
    this.compact();
    return v;
  }

  /** Remove every value whose expiry is at or before `now`; returns how many. */
  expire(now: number): number {
    let n = 0;
    for (;;) {
      const v = this.peek();
      if (v === undefined || v.expiresAt > now) break;
      this.shift();
      n++;
    }
    return n;
  }

  private skipRemoved(): void {
    while (this.head < this.order.length && this.byId.get(this.order[this.head][0]) !== this.order[this.head][1]) this.head++;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
