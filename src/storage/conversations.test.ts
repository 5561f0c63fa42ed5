import { describe, expect, it } from 'vitest';
import {
  type Conversation,
  ConversationStore,
  chatMessages,
  exportJson,
  exportMarkdown,
  newConversation,
  titleOf,
} from './conversations';
import { MemoryKeyValueStore } from './kv';

const talk = (over: Partial<Conversation> = {}): Conversation => ({
  ...newConversation('', 1000),
  messages: [
    { role: 'user', content: 'What is a llama?\nAnswer briefly.' },
    { role: 'assistant', content: 'A **camelid**.', finish: 'stop', seed: 7 },
  ],
  ...over,
});

describe('conversation store', () => {
  it('saves, lists newest first, renames and deletes; skips records that are not conversations', async () => {
    const kv = new MemoryKeyValueStore();
    const store = new ConversationStore(kv);
    const a = talk({ updatedAt: 1 });
    const b = talk({ id: 'b', updatedAt: 2 });
    await store.save(a);
    await store.save(b);
    await kv.set('conv:junk', { id: 'junk' });
    await kv.set('other', talk({ id: 'other' }));
    expect((await store.list()).map((c) => c.id)).toEqual(['b', a.id]);

    const renamed = await store.rename(a.id, '  Llamas  ');
    expect(renamed?.title).toBe('Llamas');
    expect((await store.get(a.id))?.title).toBe('Llamas');
    expect((await store.list())[0].id).toBe(a.id); // renaming touches it

    await store.delete('b');
    expect((await store.list()).map((c) => c.id)).toEqual([a.id]);
    expect(await store.get('b')).toBeUndefined();
    expect(await store.rename('b', 'x')).toBeUndefined();
    await expect(store.save({ id: 'x' } as Conversation)).rejects.toThrow('not a conversation');
  });

  it('titles a conversation by its first message until it is named', () => {
    expect(titleOf(talk())).toBe('What is a llama?');
    expect(titleOf(talk({ title: 'Mine' }))).toBe('Mine');
    expect(titleOf(newConversation())).toBe('New chat');
    const long = 'x'.repeat(100);
    const t = titleOf(talk({ messages: [{ role: 'user', content: long }] }));
    expect(t.length).toBeLessThanOrEqual(58);
    expect(t.endsWith('…')).toBe(true);
  });

  it('sends the system prompt first when there is one', () => {
    expect(chatMessages(talk()).map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(chatMessages(talk({ system: 'Be brief.' }))[0]).toEqual({ role: 'system', content: 'Be brief.' });
  });

  it('exports JSON that reads back as the same conversation, and Markdown by author', () => {
    const c = talk({ system: 'Be brief.' });
    const back = JSON.parse(exportJson(c));
    expect(back.messages).toEqual(c.messages);
    expect(back.system).toBe('Be brief.');
    expect(back.title).toBe('What is a llama?');
    expect(exportMarkdown(c)).toBe(
      '# What is a llama?\n\n## System\n\nBe brief.\n\n## You\n\nWhat is a llama?\nAnswer briefly.\n\n## Assistant\n\nA **camelid**.\n',
    );
  });
});
