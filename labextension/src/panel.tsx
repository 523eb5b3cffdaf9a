/**
 * The Ask panel's views. They render a CIMagicModel and call back into the wiring; they hold no state but
 * the text being typed.
 */

import { PageConfig } from '@jupyterlab/coreutils';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import React, { useState } from 'react';

import { baseName, downloadUrl, fileEntries } from './files';
import {
  AttemptPhase,
  CIMagicModel,
  costOf,
  IAskView,
  IAttemptView,
  isFinished,
  tokensSoFar
} from './model';
import { JSONDict } from './protocol';

export interface IPanelActions {
  ask(prompt: string, attempts: number | null): void;
  cancel(): void;
  insert(ask: IAskView): void;
  toggleFrame(name: string): void;
  selectAll(): void;
  loadExtension(): void;
  /** Open a file in JupyterLab (`docmanager:open`); `path` is relative to the server root. */
  openFile(path: string): void;
}

export class AskPanel extends ReactWidget {
  private _model: CIMagicModel | null = null;

  constructor(private _actions: IPanelActions) {
    super();
    this.addClass('jp-CIMagic-panel');
  }

  /** The model of the current notebook's kernel; null when no notebook is current. */
  get model(): CIMagicModel | null {
    return this._model;
  }

  set model(model: CIMagicModel | null) {
    if (model !== this._model) {
      this._model = model;
      this.update();
    }
  }

  render(): JSX.Element {
    const model = this._model;
    if (!model) {
      return <Empty title="No notebook">Open a notebook to ask questions about its DataFrames.</Empty>;
    }
    return (
      <UseSignal signal={model.changed} initialSender={model}>
        {() => <PanelBody model={model} actions={this._actions} />}
      </UseSignal>
    );
  }
}

function Empty(props: { title: string; children: React.ReactNode; busy?: boolean }): JSX.Element {
  return (
    <div className="jp-CIMagic-empty" data-testid="ci-empty">
      {props.busy && <div className="jp-CIMagic-spinner" aria-hidden="true" />}
      <h3>{props.title}</h3>
      <div>{props.children}</div>
    </div>
  );
}

function PanelBody(props: { model: CIMagicModel; actions: IPanelActions }): JSX.Element {
  const { model, actions } = props;
  switch (model.connection) {
    case 'no-notebook':
      return <Empty title="No notebook">Open a notebook to ask questions about its DataFrames.</Empty>;
    case 'no-kernel':
      return <Empty title="No kernel">Start this notebook's kernel to ask questions about its data.</Empty>;
    case 'connecting':
      return (
        <Empty title="Connecting…" busy>
          Waiting for ci_magic in the kernel. A running cell delays the answer until it finishes.
        </Empty>
      );
    case 'not-loaded':
      return (
        <Empty title="ci_magic is not loaded">
          <p>
            Run <code>%load_ext ci_magic</code> in this notebook, or:
          </p>
          <button className="jp-mod-styled jp-mod-accept" onClick={() => actions.loadExtension()}>
            Load ci_magic
          </button>
        </Empty>
      );
    case 'error':
      return (
        <Empty title="Cannot talk to the kernel">
          <p className="jp-CIMagic-error">{model.connectionMessage}</p>
        </Empty>
      );
    case 'ready':
      break;
  }
  const [current, ...earlier] = model.asks;
  return (
    <div className="jp-CIMagic-body">
      <AskForm model={model} actions={actions} />
      <FramePicker model={model} actions={actions} />
      {model.notice && (
        <p className="jp-CIMagic-error" data-testid="ci-notice">
          {model.notice}
        </p>
      )}
      {current ? (
        <AskDetails ask={current} model={model} actions={actions} />
      ) : (
        <p className="jp-CIMagic-hint">
          Answers appear here: each attempt's code, errors and outputs, with the tokens used.
        </p>
      )}
      <p className="jp-CIMagic-hint">
        A <code>%%ask</code> cell puts its answer in the two cells below it; running it again replaces those
        cells.
      </p>
      {earlier.length > 0 && (
        <section className="jp-CIMagic-history" data-testid="ci-history">
          <h4>Earlier asks</h4>
          {earlier.map(ask => (
            <details key={ask.id}>
              <summary>
                <StatusBadge ask={ask} /> {ask.prompt || '%%ask cell'}
              </summary>
              <AskDetails ask={ask} model={model} actions={actions} />
            </details>
          ))}
        </section>
      )}
    </div>
  );
}

function AskForm(props: { model: CIMagicModel; actions: IPanelActions }): JSX.Element {
  const [prompt, setPrompt] = useState('');
  const [attempts, setAttempts] = useState<number | null>(null);
  const running = props.model.running;
  const submit = (): void => {
    if (prompt.trim() && !running) {
      props.actions.ask(prompt, attempts);
    }
  };
  return (
    <div className="jp-CIMagic-form">
      <textarea
        className="jp-CIMagic-prompt"
        data-testid="ci-prompt"
        placeholder="Ask about your DataFrames… (Ctrl+Enter)"
        value={prompt}
        rows={3}
        onChange={e => setPrompt(e.target.value)}
        onKeyDown={e => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            submit();
          }
        }}
      />
      <div className="jp-CIMagic-row">
        <label>
          Attempts{' '}
          <select
            value={attempts ?? ''}
            onChange={e => setAttempts(e.target.value ? Number(e.target.value) : null)}
          >
            <option value="">default</option>
            {[1, 2, 3, 4, 5].map(n => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        {running ? (
          <button
            className="jp-mod-styled jp-mod-warn"
            data-testid="ci-cancel"
            disabled={running.status === 'cancelling'}
            onClick={() => props.actions.cancel()}
          >
            {running.status === 'cancelling' ? 'Cancelling…' : 'Cancel'}
          </button>
        ) : (
          <button
            className="jp-mod-styled jp-mod-accept"
            data-testid="ci-ask"
            disabled={!prompt.trim()}
            onClick={submit}
          >
            Ask
          </button>
        )}
      </div>
    </div>
  );
}

function FramePicker(props: { model: CIMagicModel; actions: IPanelActions }): JSX.Element {
  const { model, actions } = props;
  const frames = model.frames;
  const ctx = model.context;
  return (
    <section className="jp-CIMagic-frames" data-testid="ci-frames">
      <h4>
        Data sent to the model{' '}
        {model.selected !== null && (
          <button className="jp-CIMagic-link" onClick={() => actions.selectAll()}>
            all
          </button>
        )}
      </h4>
      {frames === null ? (
        <p className="jp-CIMagic-hint">Reading the notebook's DataFrames…</p>
      ) : frames.length === 0 ? (
        <p className="jp-CIMagic-hint">
          No DataFrames in the notebook yet: the model is told that no data is loaded.
        </p>
      ) : (
        <ul>
          {frames.map(f => (
            <li key={f.name}>
              <label>
                <input
                  type="checkbox"
                  checked={model.isSelected(f.name)}
                  onChange={() => actions.toggleFrame(f.name)}
                />{' '}
                <code>{f.name}</code> {f.kind} {f.shape.join(' × ')}
              </label>
            </li>
          ))}
        </ul>
      )}
      <details className="jp-CIMagic-context" data-testid="ci-context">
        <summary>
          Exactly what the next ask sends
          {ctx.status === 'ready' && ` (${ctx.tokens.toLocaleString()} tokens)`}
          {ctx.status === 'loading' && ' (updating…)'}
        </summary>
        {ctx.status === 'error' ? (
          <p className="jp-CIMagic-error">{ctx.error}</p>
        ) : (
          <pre>{ctx.text}</pre>
        )}
      </details>
    </section>
  );
}

const STATUS_TEXT: { [K in IAskView['status']]: string } = {
  running: 'running',
  cancelling: 'cancelling',
  ok: 'worked',
  failed: 'no working code',
  cancelled: 'cancelled',
  error: 'error'
};

function StatusBadge(props: { ask: IAskView }): JSX.Element {
  const status = props.ask.status;
  return <span className={`jp-CIMagic-badge jp-CIMagic-status-${status}`}>{STATUS_TEXT[status]}</span>;
}

function AskDetails(props: { ask: IAskView; model: CIMagicModel; actions: IPanelActions }): JSX.Element {
  const { ask, model, actions } = props;
  const tokens = tokensSoFar(ask);
  const total = tokens.prompt + tokens.completion;
  const cost = costOf(tokens, model.prices);
  const priced = model.prices.input > 0 || model.prices.output > 0;
  const seconds = ((ask.finishedAt ?? model.now()) - ask.startedAt) / 1000;
  return (
    <section className="jp-CIMagic-ask" data-testid="ci-ask-view" data-status={ask.status}>
      <div className="jp-CIMagic-row">
        <StatusBadge ask={ask} />
        <span data-testid="ci-tokens">
          {tokens.estimated ? '~' : ''}
          {total.toLocaleString()} tokens
        </span>
        <span data-testid="ci-cost">
          {priced ? `$${cost.toFixed(4)}` : '$0 (no prices set)'}
        </span>
        {isFinished(ask.status) && <span>{seconds.toFixed(1)} s</span>}
      </div>
      {ask.prompt ? (
        <blockquote>{ask.prompt}</blockquote>
      ) : (
        <p className="jp-CIMagic-hint">From a %%ask cell.</p>
      )}
      {!isFinished(ask.status) && ask.attempts.length === 0 && (
        <p className="jp-CIMagic-hint">
          <span className="jp-CIMagic-spinner" aria-hidden="true" /> Preparing the data description…
        </p>
      )}
      {ask.attempts.map(a => (
        <AttemptView key={a.number} attempt={a} />
      ))}
      {ask.summing && (
        <p className="jp-CIMagic-hint">
          <span className="jp-CIMagic-spinner" aria-hidden="true" /> Writing the answer…
        </p>
      )}
      {ask.answer && (
        <p className="jp-CIMagic-answer" data-testid="ci-answer">
          <b>Answer:</b> {ask.answer}
        </p>
      )}
      {ask.doubt && (
        <p className="jp-CIMagic-error" data-testid="ci-doubt">
          The answer may be wrong: the output {ask.doubt}
        </p>
      )}
      {ask.bestEffort && (
        <div data-testid="ci-best-effort">
          <p className="jp-CIMagic-error">
            No attempt worked. Best effort: the values the last run printed, put into the asked form by the model
            without new code (check them):
          </p>
          <pre>{ask.bestEffort}</pre>
        </div>
      )}
      {ask.votes && ask.votes.length > 0 && (
        <p className="jp-CIMagic-hint" data-testid="ci-vote">
          Vote: {Math.max(...ask.votes)} of {ask.votes.reduce((x, y) => x + y, 0)} working answers agreed on the
          result.
        </p>
      )}
      {ask.message && <p className="jp-CIMagic-error">{ask.message}</p>}
      {isFinished(ask.status) && ask.files.length > 0 && (
        <FileList ask={ask} folder={model.folder} actions={actions} />
      )}
      {ask.notes.map((n, i) => (
        <p key={i} className="jp-CIMagic-hint">
          {n}
        </p>
      ))}
      {ask.cells && (
        <div className="jp-CIMagic-row">
          <button
            className="jp-mod-styled jp-mod-accept"
            data-testid="ci-insert"
            onClick={() => actions.insert(ask)}
          >
            {ask.inserted ? 'Insert again' : 'Insert into notebook'}
          </button>
          <span className="jp-CIMagic-hint">
            {ask.inserted ? 'Inserted.' : 'Below the active cell: the code with its outputs, and a record.'}
          </span>
        </div>
      )}
    </section>
  );
}

// Open and Download stay together when the narrow panel wraps a row; an <a> takes the theme's text colour
// otherwise, and the Download link must look like the Open button beside it.
const FILE_ACTIONS: React.CSSProperties = { display: 'inline-flex', gap: '8px', whiteSpace: 'nowrap' };
const LINK_COLOUR: React.CSSProperties = { color: 'var(--jp-content-link-color)' };

/** The files an ask's working code wrote: Open in JupyterLab, or Download from the server. */
function FileList(props: { ask: IAskView; folder: string; actions: IPanelActions }): JSX.Element {
  const baseUrl = PageConfig.getBaseUrl();
  return (
    <section className="jp-CIMagic-files" data-testid="ci-files">
      <b>Files the code wrote</b>
      {fileEntries(props.ask.files, props.folder).map((f, i) => (
        <div key={i} className="jp-CIMagic-file" data-testid="ci-file">
          <div className="jp-CIMagic-row">
            <code data-testid="ci-file-name" title={f.path ?? undefined}>
              {f.name}
            </code>
            {f.size && <span className="jp-CIMagic-hint">{f.size}</span>}
            {f.path !== null && (
              <span style={FILE_ACTIONS}>
                <button
                  className="jp-CIMagic-link"
                  data-testid="ci-file-open"
                  title={`Open ${f.path} in JupyterLab`}
                  onClick={() => props.actions.openFile(f.path as string)}
                >
                  Open
                </button>
                <a
                  className="jp-CIMagic-link"
                  style={LINK_COLOUR}
                  data-testid="ci-file-download"
                  href={downloadUrl(baseUrl, f.path)}
                  download={baseName(f.path)}
                >
                  Download
                </a>
              </span>
            )}
          </div>
          {f.note && <p className="jp-CIMagic-hint">{f.note}</p>}
        </div>
      ))}
    </section>
  );
}

const PHASE_TEXT: { [K in AttemptPhase]: string } = {
  waiting: 'waiting for the model',
  writing: 'the model is writing',
  running: 'running in the sandbox',
  ok: 'worked',
  failed: 'failed',
  no_code: 'no code in the reply'
};

function AttemptView(props: { attempt: IAttemptView }): JSX.Element {
  const a = props.attempt;
  const live = a.phase === 'waiting' || a.phase === 'writing' || a.phase === 'running';
  return (
    <div className={`jp-CIMagic-attempt jp-CIMagic-phase-${a.phase}`} data-testid="ci-attempt">
      <div className="jp-CIMagic-row">
        {live && <span className="jp-CIMagic-spinner" aria-hidden="true" />}
        <b>
          {a.sample ? 'Sample' : 'Attempt'} {a.number}
        </b>{' '}
        <span>{PHASE_TEXT[a.phase]}</span>
        {a.chosen && <span data-testid="ci-chosen">chosen by the vote</span>}
        {a.modelSeconds !== null && <span className="jp-CIMagic-hint">model {a.modelSeconds.toFixed(1)} s</span>}
        {a.execSeconds !== null && <span className="jp-CIMagic-hint">run {a.execSeconds.toFixed(2)} s</span>}
      </div>
      {a.code === null && a.text && <pre className="jp-CIMagic-stream">{a.text}</pre>}
      {a.code !== null && <pre className="jp-CIMagic-code" data-testid="ci-code">{a.code}</pre>}
      {a.error && <pre className="jp-CIMagic-error">{a.error}</pre>}
      {a.problem && a.phase !== 'ok' && !a.sample && (
        <p className="jp-CIMagic-hint">Sent back to the model to fix.</p>
      )}
      {a.outputs
        .filter(o => !(a.error && o.output_type === 'error')) // already shown above, as one line
        .map((o, i) => (
          <Output key={i} output={o} />
        ))}
    </div>
  );
}

/** Outputs as images and text only: generated HTML/JS is never rendered here. */
function Output(props: { output: JSONDict }): JSX.Element | null {
  const o = props.output;
  if (o.output_type === 'stream') {
    return <pre className="jp-CIMagic-output">{String(o.text ?? '')}</pre>;
  }
  if (o.output_type === 'error') {
    return <pre className="jp-CIMagic-error">{`${String(o.ename)}: ${String(o.evalue)}`}</pre>;
  }
  const data = (o.data ?? {}) as JSONDict;
  const png = data['image/png'];
  if (typeof png === 'string') {
    return <img className="jp-CIMagic-image" data-testid="ci-image" src={`data:image/png;base64,${png}`} />;
  }
  const text = data['text/plain'];
  if (text !== undefined) {
    return <pre className="jp-CIMagic-output">{Array.isArray(text) ? text.join('') : String(text)}</pre>;
  }
  return null;
}
