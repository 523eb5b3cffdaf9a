/**
 * The views of one ask in the Ask panel: its status, answer, attempts with their code and outputs, and the
 * files it wrote. Like panel.tsx they render the model and call back into the wiring; they hold no state.
 */

import { PageConfig } from '@jupyterlab/coreutils';
import React from 'react';

import { baseName, downloadUrl, fileEntries } from './files';
import {
  AttemptPhase,
  CIMagicModel,
  costOf,
  IAskView,
  IAttemptView,
  isFinished,
  terminalText,
  tokensSoFar
} from './model';
import type { IPanelActions } from './panel';
import { JSONDict } from './protocol';

const STATUS_TEXT: { [K in IAskView['status']]: string } = {
  running: 'running',
  cancelling: 'cancelling',
  ok: 'worked',
  failed: 'no working code',
  cancelled: 'cancelled',
  error: 'error'
};

export function StatusBadge(props: { ask: IAskView }): JSX.Element {
  const status = props.ask.status;
  return <span className={`jp-CIMagic-badge jp-CIMagic-status-${status}`}>{STATUS_TEXT[status]}</span>;
}

/** Re-renders every second while ``on``. */
function useTick(on: boolean): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    if (!on) {
      return;
    }
    const timer = setInterval(() => setTick(t => t + 1), 1000);
    return () => clearInterval(timer);
  }, [on]);
}

export function AskDetails(props: { ask: IAskView; model: CIMagicModel; actions: IPanelActions }): JSX.Element {
  const { ask, model, actions } = props;
  const tokens = tokensSoFar(ask);
  const total = tokens.prompt + tokens.completion;
  const cost = costOf(tokens, model.prices);
  const priced = model.prices.input > 0 || model.prices.output > 0;
  const running = !isFinished(ask.status);
  useTick(running); // the elapsed time moves on while the code runs silently
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
        <span data-testid="ci-elapsed">{running ? `${seconds.toFixed(0)} s so far` : `${seconds.toFixed(1)} s`}</span>
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
    return <pre className="jp-CIMagic-output">{terminalText(String(o.text ?? ''))}</pre>;
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
