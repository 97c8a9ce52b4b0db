import { type DraftMessage, ROLES, type Role } from './draft.js';

/** The conversation as turns: a role and a text each; turns are added, removed and reordered by the person. */
export function MessagesEditor({
  messages,
  onChange,
}: {
  messages: DraftMessage[];
  onChange: (messages: DraftMessage[]) => void;
}) {
  const update = (index: number, patch: Partial<DraftMessage>) =>
    onChange(messages.map((m, i) => (i === index ? { ...m, ...patch } : m)));
  const remove = (index: number) => onChange(messages.filter((_, i) => i !== index));
  // The next turn alternates with the last one, as a conversation does.
  const nextRole: Role = messages.at(-1)?.role === 'user' ? 'assistant' : 'user';
  return (
    <fieldset className="playground-messages">
      <legend>Messages</legend>
      {messages.length === 0 && <p className="hint">No messages yet: add one below.</p>}
      <ol>
        {messages.map((message, index) => (
          // Turns have no identity but their place; the list is short and edited in place.
          // biome-ignore lint/suspicious/noArrayIndexKey: see above
          <li key={index} className="playground-message">
            <div className="row">
              <label>
                Role of message {index + 1}{' '}
                <select value={message.role} onChange={(event) => update(index, { role: event.target.value as Role })}>
                  {ROLES.map((role) => (
                    <option key={role} value={role}>
                      {role}
                    </option>
                  ))}
                </select>
              </label>
              <span className="spacer" />
              <button type="button" className="danger" onClick={() => remove(index)}>
                Remove message {index + 1}
              </button>
            </div>
            <textarea
              aria-label={`Content of message ${index + 1}`}
              value={message.content}
              rows={Math.min(12, Math.max(3, message.content.split('\n').length + 1))}
              onChange={(event) => update(index, { content: event.target.value })}
            />
          </li>
        ))}
      </ol>
      <div className="row">
        <button type="button" onClick={() => onChange([...messages, { role: nextRole, content: '' }])}>
          Add {nextRole} message
        </button>
        {!messages.some((m) => m.role === 'system') && (
          <button type="button" onClick={() => onChange([{ role: 'system', content: '' }, ...messages])}>
            Add system message
          </button>
        )}
      </div>
    </fieldset>
  );
}
