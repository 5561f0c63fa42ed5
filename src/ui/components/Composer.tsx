/** The message box: Enter sends, Shift+Enter is a new line; Stop while an answer streams. */
import type { KeyboardEvent } from 'react';

export function Composer(props: {
  text: string;
  generating: boolean;
  canSend: boolean;
  hint?: string;
  onText: (text: string) => void;
  onSend: () => void;
  onStop: () => void;
}) {
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      if (props.canSend) props.onSend();
    }
  };
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        if (props.canSend) props.onSend();
      }}
    >
      <textarea
        aria-label="Message"
        className="prompt"
        rows={2}
        placeholder="Message the model (Enter sends, Shift+Enter for a new line)"
        value={props.text}
        onChange={(e) => props.onText(e.target.value)}
        onKeyDown={onKey}
      />
      <div className="row actions">
        {props.generating ? (
          <button type="button" onClick={props.onStop}>
            Stop
          </button>
        ) : (
          <button type="submit" className="primary" disabled={!props.canSend}>
            Send
          </button>
        )}
        {props.hint && <span className="hint">{props.hint}</span>}
      </div>
    </form>
  );
}
