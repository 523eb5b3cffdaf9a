/**
 * The Ask panel's views. They render a CIMagicModel and call back into the wiring; they hold no state but
 * the text being typed.
 */

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import React, { useState } from 'react';

import { AskDetails, StatusBadge } from './askview';
import { CIMagicModel, IAskView } from './model';
import { parseHosts } from './protocol';

export interface IPanelActions {
  ask(prompt: string, attempts: number | null, allow: string[] | null): void;
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
  const [hosts, setHosts] = useState('');
  const running = props.model.running;
  const submit = (): void => {
    if (prompt.trim() && !running) {
      props.actions.ask(prompt, attempts, parseHosts(hosts));
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
        <label title="Hosts the code may reach by name over HTTP(S), e.g. data.example.org, *.example.com. Empty: as configured (%config Ask.allow_hosts); the network is otherwise off.">
          Allow{' '}
          <input
            className="jp-CIMagic-hosts"
            data-testid="ci-allow"
            placeholder="no hosts"
            value={hosts}
            size={14}
            onChange={e => setHosts(e.target.value)}
          />
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
