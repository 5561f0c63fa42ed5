/**
 * token string → id, as an open-addressing hash table over the token list. Unlike a Map it can look
 * up a *range* of a string, optionally skipping one character, without allocating: loading parses
 * 280k merges "a b" and needs the ids of "a", "b" and "ab" for each. With a Map that meant 840k
 * fresh substrings to allocate and hash, about half the load time.
 */
export class StringTable {
  private readonly mask: number;
  private readonly slots: Int32Array;

  constructor(private readonly strings: readonly string[]) {
    let size = 1024;
    while (size < strings.length * 2) size *= 2;
    this.mask = size - 1;
    this.slots = new Int32Array(size).fill(-1);
    for (let id = 0; id < strings.length; id++) {
      const s = strings[id];
      let i = StringTable.hash(s, 0, s.length, -1) & this.mask;
      let dup = false;
      for (let cur = this.slots[i]; cur !== -1; cur = this.slots[i]) {
        if (strings[cur] === s) {
          dup = true; // first id wins, as in llama.cpp's token_to_id
          break;
        }
        i = (i + 1) & this.mask;
      }
      if (!dup) this.slots[i] = id;
    }
  }

  /** FNV-1a over the UTF-16 code units of s[start, end), leaving out index `skip`. */
  private static hash(s: string, start: number, end: number, skip: number): number {
    let h = 0x811c9dc5;
    for (let i = start; i < end; i++) {
      if (i === skip) continue;
      h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    }
    return (h ^ (h >>> 15)) >>> 0;
  }

  /** Id of `s`, or -1. */
  get(s: string): number {
    return this.getRange(s, 0, s.length, -1);
  }

  /** Id of the string s[start, end) with the character at `skip` removed (-1: none), or -1. */
  getRange(s: string, start: number, end: number, skip = -1): number {
    const len = end - start - (skip >= start && skip < end ? 1 : 0);
    let i = StringTable.hash(s, start, end, skip) & this.mask;
    for (let id = this.slots[i]; id !== -1; id = this.slots[i]) {
      const t = this.strings[id];
      if (t.length === len) {
        let same = true;
        for (let k = start, j = 0; k < end; k++) {
          if (k === skip) continue;
          if (t.charCodeAt(j++) !== s.charCodeAt(k)) {
            same = false;
            break;
          }
        }
        if (same) return id;
      }
      i = (i + 1) & this.mask;
    }
    return -1;
  }
}
