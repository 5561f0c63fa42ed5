/** The saved conversations: switch, rename, delete (confirmed), export as JSON or Markdown. */
import { useState } from 'react';
import { type Conversation, exportJson, exportMarkdown, titleOf } from '../../storage/conversations';

function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const fileStem = (c: Conversation) =>
  titleOf(c)
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40) || 'conversation';

export function ConversationList(props: {
  conversations: Conversation[];
  currentId?: string;
  busy: boolean;
  persistent: boolean;
  onNew: () => void;
  onOpen: (id: string) => void;
  onRename: (id: string, title: string) => void;
  onDelete: (id: string) => void;
}) {
  const [renaming, setRenaming] = useState<string>();
  const [draft, setDraft] = useState('');
  const current = props.conversations.find((c) => c.id === props.currentId);
  return (
    <nav className="conversations" aria-label="Conversations">
      <div className="row">
        <button type="button" className="primary" onClick={props.onNew} disabled={props.busy}>
          New chat
        </button>
        {current && current.messages.length > 0 && (
          <>
            <button
              type="button"
              className="small"
              onClick={() => download(`${fileStem(current)}.json`, 'application/json', exportJson(current))}
            >
              Export JSON
            </button>
            <button
              type="button"
              className="small"
              onClick={() => download(`${fileStem(current)}.md`, 'text/markdown', exportMarkdown(current))}
            >
              Export Markdown
            </button>
          </>
        )}
      </div>
      {!props.persistent && (
        <p className="hint">Storage is unavailable here: conversations last until the page is closed.</p>
      )}
      <ul className="conversation-list">
        {props.conversations
          .filter((c) => c.messages.length > 0)
          .map((c) => (
            <li key={c.id} className={c.id === props.currentId ? 'selected' : undefined}>
              {renaming === c.id ? (
                <form
                  className="row"
                  onSubmit={(e) => {
                    e.preventDefault();
                    props.onRename(c.id, draft);
                    setRenaming(undefined);
                  }}
                >
                  <input
                    aria-label="Conversation name"
                    value={draft}
                    // biome-ignore lint/a11y/noAutofocus: the user just asked to rename this one
                    autoFocus
                    onChange={(e) => setDraft(e.target.value)}
                  />
                  <button type="submit" className="small">
                    Save
                  </button>
                  <button type="button" className="small" onClick={() => setRenaming(undefined)}>
                    Cancel
                  </button>
                </form>
              ) : (
                <>
                  <button
                    type="button"
                    className="conversation-title"
                    aria-current={c.id === props.currentId ? 'page' : undefined}
                    disabled={props.busy && c.id !== props.currentId}
                    onClick={() => props.onOpen(c.id)}
                  >
                    {titleOf(c)}
                  </button>
                  <button
                    type="button"
                    className="small"
                    aria-label={`Rename ${titleOf(c)}`}
                    onClick={() => {
                      setDraft(titleOf(c));
                      setRenaming(c.id);
                    }}
                  >
                    Rename
                  </button>
                  <button
                    type="button"
                    className="small danger"
                    aria-label={`Delete ${titleOf(c)}`}
                    disabled={props.busy && c.id === props.currentId}
                    onClick={() => {
                      if (confirm(`Delete the conversation “${titleOf(c)}”? This cannot be undone.`))
                        props.onDelete(c.id);
                    }}
                  >
                    Delete
                  </button>
                </>
              )}
            </li>
          ))}
      </ul>
    </nav>
  );
}
