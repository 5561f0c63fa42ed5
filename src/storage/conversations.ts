/**
 * Conversations kept on this device (IndexedDB through kv.ts, memory where IndexedDB is unusable),
 * so they survive a reload and work offline. One record per conversation under `conv:<id>`; the
 * list is read from the keys, newest first. Export as JSON (the record, re-importable) and Markdown.
 */
import { createStore } from 'idb-keyval';
import { IdbKeyValueStore, type KeyValueStore, MemoryKeyValueStore } from './kv';

export type Role = 'system' | 'user' | 'assistant';

export interface StoredMessage {
  role: 'user' | 'assistant';
  content: string;
  /** Why the answer ended (assistant messages). */
  finish?: 'stop' | 'length' | 'interrupted';
  /** The sampler seed the answer was drawn with. */
  seed?: number;
}

export interface Conversation {
  id: string;
  /** The user's name for it; when empty, the first message names it (`titleOf`). */
  title: string;
  /** The system prompt (empty: none). */
  system: string;
  messages: StoredMessage[];
  createdAt: number;
  updatedAt: number;
  /** The model it was last used with, for the list. */
  model?: string;
}

const PREFIX = 'conv:';
export const CONVERSATIONS_DB = 'llama3-webgpu-conversations';

/** The conversation's title: its own, or the first user message's first line, shortened. */
export function titleOf(c: Conversation): string {
  if (c.title.trim()) return c.title.trim();
  const first =
    c.messages
      .find((m) => m.role === 'user')
      ?.content.trim()
      .split('\n')[0] ?? '';
  if (!first) return 'New chat';
  return first.length > 60 ? `${first.slice(0, 57).trimEnd()}…` : first;
}

export function newConversation(system = '', now = Date.now()): Conversation {
  return { id: crypto.randomUUID(), title: '', system, messages: [], createdAt: now, updatedAt: now };
}

/** The messages the model sees: the system prompt (when set) and the turns. */
export function chatMessages(c: Conversation): { role: Role; content: string }[] {
  const turns = c.messages.map((m) => ({ role: m.role, content: m.content }));
  return c.system.trim() ? [{ role: 'system', content: c.system }, ...turns] : turns;
}

function isConversation(v: unknown): v is Conversation {
  const c = v as Conversation;
  return (
    !!c &&
    typeof c.id === 'string' &&
    typeof c.title === 'string' &&
    typeof c.system === 'string' &&
    Array.isArray(c.messages) &&
    c.messages.every(
      (m) => m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string',
    ) &&
    typeof c.createdAt === 'number' &&
    typeof c.updatedAt === 'number'
  );
}

export class ConversationStore {
  constructor(private readonly kv: KeyValueStore) {}

  /** IndexedDB when it opens, memory otherwise (`persistent` says which). */
  static async open(): Promise<ConversationStore> {
    if (typeof indexedDB !== 'undefined') {
      try {
        const kv = new IdbKeyValueStore(createStore(CONVERSATIONS_DB, 'conversations'));
        await kv.keys();
        return new ConversationStore(kv);
      } catch {
        // blocked or broken storage: keep them for this visit only
      }
    }
    return new ConversationStore(new MemoryKeyValueStore());
  }

  get persistent(): boolean {
    return this.kv.persistent;
  }

  /** All conversations, most recently updated first. Records that are not conversations are skipped. */
  async list(): Promise<Conversation[]> {
    const keys = (await this.kv.keys()).filter((k) => k.startsWith(PREFIX));
    const all = await Promise.all(keys.map((k) => this.kv.get<unknown>(k)));
    return all.filter(isConversation).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async get(id: string): Promise<Conversation | undefined> {
    const c = await this.kv.get<unknown>(PREFIX + id);
    return isConversation(c) ? c : undefined;
  }

  async save(c: Conversation): Promise<void> {
    if (!isConversation(c)) throw new Error('not a conversation');
    await this.kv.set(PREFIX + c.id, c);
  }

  async rename(id: string, title: string): Promise<Conversation | undefined> {
    const c = await this.get(id);
    if (!c) return undefined;
    const renamed = { ...c, title: title.trim(), updatedAt: Date.now() };
    await this.save(renamed);
    return renamed;
  }

  async delete(id: string): Promise<void> {
    await this.kv.del(PREFIX + id);
  }
}

/** The conversation as JSON: the stored record (system prompt, messages, dates), indented. */
export function exportJson(c: Conversation): string {
  return `${JSON.stringify({ ...c, title: titleOf(c) }, null, 2)}\n`;
}

/** The conversation as Markdown: a title, then each message under its author. */
export function exportMarkdown(c: Conversation): string {
  const parts = [`# ${titleOf(c)}`];
  if (c.system.trim()) parts.push(`## System\n\n${c.system.trim()}`);
  for (const m of c.messages)
    parts.push(`## ${m.role === 'user' ? 'You' : 'Assistant'}\n\n${m.content.trim()}`);
  return `${parts.join('\n\n')}\n`;
}
