/**
 * What the Ask panel shows, as plain data: the connection, each ask with its attempts, the context preview,
 * prices; and the pure functions over them (tokens so far, cost). No JupyterLab imports, no state: the model
 * (model.ts) holds the values, the views (panel.tsx, askview.tsx) render them.
 */

import { IDeliveredFile, IUsage, JSONDict } from './protocol';

export type ConnectionState =
  | 'no-notebook' // nothing to ask about (e.g. the file browser is active)
  | 'no-kernel' // the notebook has no running kernel
  | 'connecting' // hello sent, no answer yet (the kernel may be busy)
  | 'not-loaded' // the kernel refused the comm: `%load_ext ci_magic` has not run
  | 'ready'
  | 'error'; // the kernel speaks another protocol version

export type AttemptPhase = 'waiting' | 'writing' | 'running' | 'ok' | 'failed' | 'no_code';

export interface IAttemptView {
  number: number;
  phase: AttemptPhase;
  text: string; // the model's reply so far
  code: string | null;
  outputs: JSONDict[];
  error: string | null;
  problem: string | null; // what the model was told to fix
  promptTokens: number;
  completionTokens: number;
  modelSeconds: number | null;
  execSeconds: number | null;
  sample: boolean; // an extra independent answer drawn for a vote, not a repair
  chosen: boolean; // the answer the vote kept
}

export type AskStatus = 'running' | 'cancelling' | 'ok' | 'failed' | 'cancelled' | 'error';

export interface IAskView {
  id: string;
  origin: 'panel' | 'cell';
  prompt: string; // empty for %%ask cells: the kernel does not send the question
  frames: string[] | null;
  status: AskStatus;
  attempts: IAttemptView[];
  contextTokens: number | null;
  cells: JSONDict[] | null;
  usage: IUsage | null; // the final, reported usage
  votes: number[] | null; // how many working answers agreed on each result, when samples were drawn
  answer: string | null; // the answer in words, written by the model from the working run's outputs
  doubt: string | null; // what in the working run's output contradicts an answer (e.g. an empty table)
  bestEffort: string | null; // a failed ask's answer lines, from its last printed output: not a success
  summing: boolean; // the answer in words (or a failed ask's format step) is being written
  notes: string[];
  files: IDeliveredFile[]; // what the working code wrote, copied into the notebook's folder (files.ts)
  message: string | null;
  startedAt: number;
  finishedAt: number | null;
  inserted: boolean;
}

export interface IContextPreview {
  status: 'idle' | 'loading' | 'ready' | 'error';
  text: string;
  tokens: number;
  error: string | null;
}

/** Prices per million tokens, from the extension's settings; 0 for self-hosted models. */
export interface IPrices {
  input: number;
  output: number;
}

export const CHARS_PER_TOKEN = 4; // the same estimate as ci_magic/core/results.py (rounded up)

export function emptyAttempt(n: number): IAttemptView {
  return {
    number: n,
    phase: 'waiting',
    text: '',
    code: null,
    outputs: [],
    error: null,
    problem: null,
    promptTokens: 0,
    completionTokens: 0,
    modelSeconds: null,
    execSeconds: null,
    sample: false,
    chosen: false
  };
}

/** Tokens used so far: reported counts of finished replies plus an estimate of the reply being streamed. */
export function tokensSoFar(ask: IAskView): { prompt: number; completion: number; estimated: boolean } {
  if (ask.usage) {
    return {
      prompt: ask.usage.prompt_tokens,
      completion: ask.usage.completion_tokens,
      estimated: ask.usage.estimated
    };
  }
  let prompt = 0;
  let completion = 0;
  let estimated = false;
  for (const a of ask.attempts) {
    prompt += a.promptTokens;
    if (a.modelSeconds === null) {
      completion += Math.ceil(a.text.length / CHARS_PER_TOKEN);
      estimated = estimated || a.text.length > 0;
    } else {
      completion += a.completionTokens;
    }
  }
  return { prompt, completion, estimated };
}

export function costOf(tokens: { prompt: number; completion: number }, prices: IPrices): number {
  return (tokens.prompt * prices.input + tokens.completion * prices.output) / 1_000_000;
}

export function isFinished(status: AskStatus): boolean {
  return status !== 'running' && status !== 'cancelling';
}

/** Most characters of one stream kept while it runs (the finished run's outputs replace the live ones). */
export const LIVE_STREAM_CHARS = 100_000;

/**
 * Replays the live output ops of a running execution onto its outputs, in order (ci_magic/sandbox/live.py): text
 * appended to the last stream of its name, an output added, a display updated by its id, everything cleared.
 */
export function applyOps(outputs: JSONDict[], ops: JSONDict[]): void {
  for (const op of ops) {
    switch (op.op) {
      case 'clear':
        outputs.length = 0;
        break;
      case 'stream': {
        const last = outputs[outputs.length - 1];
        const text = String(op.text ?? '');
        if (last && last.output_type === 'stream' && last.name === op.name) {
          last.text = (String(last.text ?? '') + text).slice(-LIVE_STREAM_CHARS);
        } else {
          outputs.push({ output_type: 'stream', name: String(op.name ?? 'stdout'), text: text.slice(-LIVE_STREAM_CHARS) });
        }
        break;
      }
      case 'output':
        if (op.output && typeof op.output === 'object') {
          outputs.push({ ...(op.output as JSONDict), display_id: op.display_id ?? null });
        }
        break;
      case 'update':
        for (const o of outputs) {
          if (op.display_id && o.display_id === op.display_id) {
            o.data = op.data ?? {};
          }
        }
        break;
    }
  }
}

/** Text as a terminal shows it: a carriage return starts its line over (a progress bar redraws in place). */
export function terminalText(text: string): string {
  return text
    .split('\n')
    .map(line => {
      const parts = line.replace(/\r+$/, '').split('\r');
      return parts[parts.length - 1];
    })
    .join('\n');
}
