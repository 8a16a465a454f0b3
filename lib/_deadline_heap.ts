/**
 * A binary min-heap of items ordered by a numeric deadline: the lock store's
 * expiry queue. One timer for the earliest deadline replaces a timer per lock,
 * which the acquire benchmark showed to cost more than the rest of a grant.
 *
 * @module
 */

/** A min-heap of `{ at }` entries. */
export class DeadlineHeap<T extends { at: number }> {
  readonly #items: T[] = [];

  /** How many entries it holds. */
  get size(): number {
    return this.#items.length;
  }

  /** The entry with the earliest deadline, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** Adds an entry. */
  push(item: T): void {
    const items = this.#items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.at <= item.at) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = item;
  }

  /** Removes and returns the entry with the earliest deadline. */
  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && items[right]!.at < items[left]!.at ? right : left;
      if (items[child]!.at >= last.at) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }

  /** Removes every entry. */
  clear(): void {
    this.#items.length = 0;
  }
}
