/**
 * Byte-pair merging by rank. A pre-token piece starts as one symbol per byte; the adjacent pair with
 * the lowest merge rank (leftmost on ties) is merged, again and again, until no adjacent pair has a
 * merge. This is the order HF tokenizers (`Word::merge_all`) and llama.cpp (`llm_tokenizer_bpe`)
 * use; both keep candidate pairs in a priority queue so a long word costs O(n log n), not O(n²).
 */

/** Open-addressing hash map (left id, right id) → merge index, in typed arrays. */
export class PairTable {
  private readonly mask: number;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly value: Int32Array;

  constructor(capacity: number) {
    let size = 1024;
    while (size < capacity * 2) size *= 2; // load factor ≤ 0.5
    this.mask = size - 1;
    this.left = new Int32Array(size).fill(-1);
    this.right = new Int32Array(size);
    this.value = new Int32Array(size);
  }

  private static hash(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  }

  /** Inserts unless present; returns false when the pair was already there (first rank wins). */
  set(a: number, b: number, v: number): boolean {
    let i = PairTable.hash(a, b) & this.mask;
    while (this.left[i] !== -1) {
      if (this.left[i] === a && this.right[i] === b) return false;
      i = (i + 1) & this.mask;
    }
    this.left[i] = a;
    this.right[i] = b;
    this.value[i] = v;
    return true;
  }

  /** The merge index of (a, b), or -1. */
  get(a: number, b: number): number {
    let i = PairTable.hash(a, b) & this.mask;
    for (;;) {
      const l = this.left[i];
      if (l === -1) return -1;
      if (l === a && this.right[i] === b) return this.value[i];
      i = (i + 1) & this.mask;
    }
  }
}

/** Merge rules: `pairs` maps (left, right) to a rank r; `result[r]` is the merged token id. */
export interface MergeRules {
  pairs: PairTable;
  result: Int32Array;
}

// Scratch space reused across calls (single-threaded; grown on demand).
let cap = 0;
let ids = new Int32Array(0);
let prev = new Int32Array(0);
let next = new Int32Array(0);
let heap = new Float64Array(0);

function grow(n: number) {
  if (n <= cap) return;
  cap = Math.max(n, cap * 2, 64);
  ids = new Int32Array(cap);
  prev = new Int32Array(cap);
  next = new Int32Array(cap);
  heap = new Float64Array(cap * 2);
}

/**
 * Merges `symbols` (initial token ids, one per byte) and returns the final ids.
 * Heap entries are `rank * 2^32 + leftPosition`, so popping the smallest gives the lowest rank and,
 * among equal ranks, the leftmost pair. Entries go stale when a neighbour merges; a popped entry is
 * re-checked against the current symbols and dropped if it no longer applies.
 */
export function bpeMerge(symbols: ArrayLike<number>, rules: MergeRules): number[] {
  const n = symbols.length;
  if (n < 2) return Array.from(symbols);
  grow(n);
  for (let i = 0; i < n; i++) {
    ids[i] = symbols[i];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  let size = 0;
  const push = (key: number) => {
    // Every merge removes one symbol and pushes at most two entries: n initial + 2n ≤ 3n entries.
    if (size === heap.length) {
      const bigger = new Float64Array(heap.length * 2);
      bigger.set(heap);
      heap = bigger;
    }
    let i = size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p] <= key) break;
      heap[i] = heap[p];
      i = p;
    }
    heap[i] = key;
  };
  const pop = (): number => {
    const top = heap[0];
    const last = heap[--size];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) break;
      const r = l + 1;
      const c = r < size && heap[r] < heap[l] ? r : l;
      if (heap[c] >= last) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = last;
    return top;
  };
  const TWO32 = 4294967296;
  const pairs = rules.pairs;
  for (let i = 0; i + 1 < n; i++) {
    const r = pairs.get(ids[i], ids[i + 1]);
    if (r >= 0) push(r * TWO32 + i);
  }
  while (size > 0) {
    const key = pop();
    const rank = Math.floor(key / TWO32);
    const pos = key - rank * TWO32;
    const right = next[pos];
    // Stale: the left symbol was merged away (ids = -1), or the pair changed since it was queued.
    if (ids[pos] < 0 || right < 0 || pairs.get(ids[pos], ids[right]) !== rank) continue;
    ids[pos] = rules.result[rank];
    ids[right] = -1;
    const after = next[right];
    next[pos] = after;
    if (after >= 0) prev[after] = pos;
    const before = prev[pos];
    if (before >= 0) {
      const r = pairs.get(ids[before], ids[pos]);
      if (r >= 0) push(r * TWO32 + before);
    }
    if (after >= 0) {
      const r = pairs.get(ids[pos], ids[after]);
      if (r >= 0) push(r * TWO32 + pos);
    }
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
  return out;
}
