/**
 * One message of the conversation, labelled by its author. Answers render as Markdown (markdown.ts:
 * raw HTML off, safe links only); the user's and system's words stay plain text.
 */
import { type MouseEvent, useMemo, useState } from 'react';
import { finishInWords } from '../format';
import { renderMarkdown } from '../markdown';

export type Author = 'You' | 'Assistant' | 'System';

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** "Copy" that says "Copied" for a moment (or that the browser refused). */
export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  return (
    <button
      type="button"
      className="small"
      onClick={async () => {
        setState((await copyText(text)) ? 'copied' : 'failed');
        setTimeout(() => setState('idle'), 1500);
      }}
    >
      {label}
      <span className="visually-hidden" aria-live="polite">
        {state === 'copied' ? ' (copied)' : state === 'failed' ? ' (copy refused by the browser)' : ''}
      </span>
    </button>
  );
}

/** The copy buttons inside rendered code blocks (the HTML is markdown-it's, so clicks are delegated). */
function onCodeCopy(e: MouseEvent<HTMLDivElement>) {
  const button = (e.target as HTMLElement).closest('button.copy-code');
  const code = button?.parentElement?.querySelector('code');
  if (!button || !code) return;
  copyText(code.textContent ?? '').then((ok) => {
    button.textContent = ok ? 'Copied' : 'Copy refused';
    setTimeout(() => {
      button.textContent = 'Copy code';
    }, 1500);
  });
}

export function MessageView(props: {
  author: Author;
  text: string;
  streaming?: boolean;
  finish?: string;
  /** Buttons (Regenerate, Edit), after Copy. */
  actions?: React.ReactNode;
  /** Replaces the text (an edit in progress). */
  editor?: React.ReactNode;
}) {
  const markdown = props.author === 'Assistant';
  const html = useMemo(() => (markdown ? renderMarkdown(props.text) : ''), [markdown, props.text]);
  return (
    <article className={`message ${props.author.toLowerCase()}`} aria-label={props.author}>
      <header className="author">{props.author}</header>
      {props.editor ??
        (markdown ? (
          // biome-ignore lint/a11y/noStaticElementInteractions: clicks come from the code blocks' own buttons
          // biome-ignore lint/a11y/useKeyWithClickEvents: those are real buttons, keyboard included
          <div
            className="md"
            onClick={onCodeCopy}
            // biome-ignore lint/security/noDangerouslySetInnerHtml: markdown-it with raw HTML off and link validation (markdown.ts)
            dangerouslySetInnerHTML={{ __html: html }}
          />
        ) : (
          <div className="plain">{props.text}</div>
        ))}
      {props.streaming && <span className="cursor" aria-hidden="true" />}
      {!props.streaming && !props.editor && (
        <footer className="message-actions">
          {props.finish && props.finish !== 'stop' && (
            <small className="finish">{finishInWords(props.finish)}</small>
          )}
          <CopyButton text={props.text} />
          {props.actions}
        </footer>
      )}
    </article>
  );
}
