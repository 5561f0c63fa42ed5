/**
 * Chat mode: the saved conversations, the system prompt, the conversation (a `log`, each message
 * labelled by its author), the composer, the context meter and the last answer's stats.
 *
 * Each turn sends the whole conversation (system prompt + every message) through chat-client.ts;
 * the answer streams into its own message and is saved with the conversation when it ends.
 */
import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import {
  type Conversation,
  type ConversationStore,
  chatMessages,
  newConversation,
  type StoredMessage,
} from '../../storage/conversations';
import type { ModelInfo } from '../../worker/api';
import type { RemoteEngine } from '../../worker/client';
import { type ChatReply, sendChat } from '../chat-client';
import type { Settings } from '../settings';
import { Composer } from './Composer';
import { ConversationList } from './ConversationList';
import { MessageView } from './Message';
import { StatsView } from './StatsView';

export interface ChatRunner {
  /** Waits for the model (loading it when needed); false when there is none to use. */
  ready: () => Promise<boolean>;
  /** Runs one generation with the page's busy state and error line. */
  run: <T>(task: () => Promise<T>) => Promise<T | undefined>;
}

export function ChatView(props: {
  engine: RemoteEngine;
  store?: ConversationStore;
  model?: ModelInfo;
  /** The loaded model is a base model: chat may ramble. */
  baseModel: boolean;
  generating: boolean;
  /** The settings (undefined while a field is invalid: sending is blocked). */
  settings?: Settings;
  seedFor: (s: Settings) => number | undefined;
  runner: ChatRunner;
  onStop: () => void;
  /** The mode switch and the settings, placed by the view. */
  controls: ReactNode;
  settingsPanel: ReactNode;
}) {
  const { store, runner } = props;
  const [list, setList] = useState<Conversation[]>([]);
  const [conv, setConv] = useState<Conversation>(() => newConversation());
  const [text, setText] = useState('');
  const [streaming, setStreaming] = useState<string>();
  const [last, setLast] = useState<ChatReply>();
  const [editing, setEditing] = useState<{ index: number; text: string }>();
  const [waiting, setWaiting] = useState(false);
  const logRef = useRef<HTMLDivElement>(null);

  const refreshList = useCallback(async () => {
    if (store) setList(await store.list().catch(() => []));
  }, [store]);

  // Open the most recent conversation once the store is there (a reload restores it).
  const opened = useRef(false);
  useEffect(() => {
    if (!store || opened.current) return;
    opened.current = true;
    store.list().then(
      (all) => {
        setList(all);
        if (all[0]) setConv((c) => (c.messages.length === 0 ? all[0] : c));
      },
      () => {},
    );
  }, [store]);

  const save = useCallback(
    async (c: Conversation) => {
      if (!store || c.messages.length === 0) return;
      await store.save(c).catch(() => {});
      refreshList();
    },
    [store, refreshList],
  );

  // Keep the newest text in view while it streams (the log scrolls, the page does not).
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs when a message is added or grows
  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [conv.messages.length, streaming]);

  /** Answers the conversation `c` (its last message is the user's) and saves the result. */
  const answer = async (c: Conversation) => {
    const settings = props.settings;
    if (!settings) return;
    setConv(c);
    save(c);
    setWaiting(true);
    const ok = await runner.ready();
    setWaiting(false);
    if (!ok) return;
    setStreaming('');
    setLast(undefined);
    const reply = await runner.run(() =>
      sendChat(props.engine, chatMessages(c), { ...settings, seed: props.seedFor(settings) }, (delta) =>
        setStreaming((s) => (s ?? '') + delta),
      ),
    );
    setStreaming(undefined);
    if (!reply) return;
    const message: StoredMessage = {
      role: 'assistant',
      content: reply.text,
      finish: reply.finish,
      seed: reply.stats.seed,
    };
    const next = {
      ...c,
      messages: [...c.messages, message],
      updatedAt: Date.now(),
      model: props.model?.name,
    };
    setConv(next);
    setLast(reply);
    save(next);
  };

  const busy = props.generating || waiting;
  const canSend = !busy && !!props.settings && text.trim().length > 0;
  const send = () => {
    if (!canSend) return;
    const c = {
      ...conv,
      messages: [...conv.messages, { role: 'user' as const, content: text }],
      updatedAt: Date.now(),
    };
    setText('');
    answer(c);
  };
  const regenerate = () => {
    const msgs = conv.messages;
    if (busy || msgs[msgs.length - 1]?.role !== 'assistant') return;
    answer({ ...conv, messages: msgs.slice(0, -1), updatedAt: Date.now() });
  };
  const resend = (index: number, content: string) => {
    if (busy || !content.trim()) return;
    setEditing(undefined);
    answer({
      ...conv,
      messages: [...conv.messages.slice(0, index), { role: 'user', content }],
      updatedAt: Date.now(),
    });
  };
  const switchTo = async (c: Conversation) => {
    setEditing(undefined);
    setLast(undefined);
    setConv(c);
  };

  const contextUsed = last?.contextTokens;
  const contextLength = last?.contextLength ?? props.model?.maxSeqLen;
  const lastIndex = conv.messages.length - 1;

  return (
    <div className="chat">
      <ConversationList
        conversations={list.some((c) => c.id === conv.id) ? list : [conv, ...list]}
        currentId={conv.id}
        busy={busy}
        persistent={store?.persistent ?? true}
        onNew={() => switchTo(newConversation(conv.system))}
        onOpen={async (id) => {
          const c = list.find((x) => x.id === id);
          if (c) switchTo(c);
        }}
        onRename={async (id, title) => {
          const renamed = await store?.rename(id, title);
          if (renamed && id === conv.id) setConv(renamed);
          refreshList();
        }}
        onDelete={async (id) => {
          await store?.delete(id);
          if (id === conv.id) switchTo(newConversation(conv.system));
          refreshList();
        }}
      />
      <div className="chat-main">
        <div className="row controls">{props.controls}</div>
        {props.baseModel && (
          <p className="hint" role="note">
            This is a base model: it was not trained to chat, so its answers may ramble. Completion mode suits
            it better; an Instruct model suits chat.
          </p>
        )}
        <details className="system-prompt" open={conv.system.length > 0 || undefined}>
          <summary>System prompt</summary>
          <textarea
            aria-label="System prompt"
            rows={2}
            placeholder="e.g. You are a concise assistant."
            value={conv.system}
            disabled={busy}
            onChange={(e) => setConv({ ...conv, system: e.target.value })}
            onBlur={() => save(conv)}
          />
        </details>
        <div className="log" role="log" aria-label="Conversation" aria-busy={props.generating} ref={logRef}>
          {conv.system.trim() && conv.messages.length > 0 && (
            <MessageView author="System" text={conv.system} />
          )}
          {conv.messages.length === 0 && streaming === undefined && (
            <p className="hint empty">No messages yet. Type one below.</p>
          )}
          {conv.messages.map((m, i) =>
            m.role === 'user' ? (
              <MessageView
                // biome-ignore lint/suspicious/noArrayIndexKey: messages are positional in a conversation
                key={i}
                author="You"
                text={m.content}
                editor={
                  editing?.index === i ? (
                    <form
                      className="edit"
                      onSubmit={(e) => {
                        e.preventDefault();
                        resend(i, editing.text);
                      }}
                    >
                      <textarea
                        aria-label="Edit message"
                        value={editing.text}
                        onChange={(e) => setEditing({ index: i, text: e.target.value })}
                      />
                      <div className="row">
                        <button type="submit" className="small primary" disabled={!editing.text.trim()}>
                          Resend
                        </button>
                        <button type="button" className="small" onClick={() => setEditing(undefined)}>
                          Cancel
                        </button>
                      </div>
                    </form>
                  ) : undefined
                }
                actions={
                  <button
                    type="button"
                    className="small"
                    disabled={busy}
                    onClick={() => setEditing({ index: i, text: m.content })}
                  >
                    Edit
                  </button>
                }
              />
            ) : (
              <MessageView
                // biome-ignore lint/suspicious/noArrayIndexKey: messages are positional in a conversation
                key={i}
                author="Assistant"
                text={m.content}
                finish={m.finish}
                actions={
                  i === lastIndex && (
                    <button type="button" className="small" disabled={busy} onClick={regenerate}>
                      Regenerate
                    </button>
                  )
                }
              />
            ),
          )}
          {streaming !== undefined && <MessageView author="Assistant" text={streaming} streaming />}
        </div>
        {last?.warnings.map((w) => (
          <p key={w} className="hint" role="note">
            {w}
          </p>
        ))}
        <Composer
          text={text}
          generating={props.generating}
          canSend={canSend}
          hint={
            waiting
              ? 'starts as soon as the model has loaded…'
              : !props.settings
                ? 'Fix the settings marked below first.'
                : undefined
          }
          onText={setText}
          onSend={send}
          onStop={props.onStop}
        />
        {contextUsed !== undefined && contextLength !== undefined && (
          <div className="context-meter">
            <label>
              <span className="label">Context</span>
              <meter aria-label="Context used" min={0} max={contextLength} value={contextUsed} />
            </label>
            <span className="hint">
              {contextUsed} of {contextLength} tokens
            </span>
          </div>
        )}
        {props.settingsPanel}
        {last && <StatsView stats={last.stats} />}
      </div>
    </div>
  );
}
