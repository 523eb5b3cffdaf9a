/**
 * The Ask panel's state for one kernel: connection, DataFrames and the context preview, asks with their live
 * attempts, tokens and cost, and the history. No JupyterLab imports: the wiring (index.ts) feeds it kernel
 * messages and sends what it returns; the views (panel.tsx, askview.tsx) render it and call its actions. The
 * shapes it holds are in asks.ts.
 */

import { ISignal, Signal } from '@lumino/signaling';

import {
  askRequest,
  contextRequest,
  EventKind,
  IAskRequest,
  IContextRequest,
  IEventMessage,
  IFrameInfo,
  IListFrames,
  JSONDict,
  KernelMessage,
  listFrames,
  parseFiles
} from './protocol';

import {
  applyOps,
  ConnectionState,
  emptyAttempt,
  IAskView,
  IContextPreview,
  IPrices,
  isFinished
} from './asks';

export * from './asks';

let counter = 0;
function newAskId(): string {
  counter += 1;
  return `panel-${Date.now().toString(36)}-${counter}`;
}

export class CIMagicModel {
  private _changed = new Signal<this, void>(this);
  private _asks: IAskView[] = [];
  private _adopted = new Set<string>(); // asks known only from another comm's events

  connection: ConnectionState = 'no-kernel';
  connectionMessage: string | null = null;
  kernelVersion: string | null = null;
  frames: IFrameInfo[] | null = null; // null until the kernel answered
  selected: string[] | null = null; // null: every frame (what %%ask without --frames sends)
  context: IContextPreview = { status: 'idle', text: '', tokens: 0, error: null };
  notice: string | null = null; // a problem outside any ask, e.g. an insertion that found no anchor
  prices: IPrices = { input: 0, output: 0 };
  /**
   * The folder of the notebook this kernel was started for, relative to the server root ('' at the root):
   * the kernel's working directory, where files an ask's code wrote are saved (`saved_as` is relative to it).
   */
  folder = '';
  /** For tests and the Insert button: the clock is injectable. */
  now: () => number = () => Date.now();

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Newest first. */
  get asks(): readonly IAskView[] {
    return this._asks;
  }

  get running(): IAskView | null {
    return this._asks.find(a => !isFinished(a.status)) ?? null;
  }

  setConnection(state: ConnectionState, message: string | null = null): void {
    this.connection = state;
    this.connectionMessage = message;
    if (state !== 'ready') {
      this.frames = null;
      this.context = { status: 'idle', text: '', tokens: 0, error: null };
      this._abandonRunning('The kernel went away before the ask finished.');
    }
    this._emit();
  }

  setPrices(prices: IPrices): void {
    this.prices = prices;
    this._emit();
  }

  setFolder(folder: string): void {
    this.folder = folder;
    this._emit();
  }

  setNotice(notice: string | null): void {
    this.notice = notice;
    this._emit();
  }

  // ---- actions that produce a message for the kernel ------------------------------------------------------

  requestFrames(): IListFrames {
    return listFrames();
  }

  requestContext(): IContextRequest {
    this.context = { ...this.context, status: 'loading', error: null };
    this._emit();
    return contextRequest(this.selected);
  }

  /** Toggle one frame; returns the new context request (the preview must follow the selection). */
  toggleFrame(name: string): IContextRequest {
    const all = (this.frames ?? []).map(f => f.name);
    const current = this.selected ?? all;
    const next = current.includes(name) ? current.filter(n => n !== name) : [...current, name];
    // Keep the notebook's order, and go back to "all" when everything is picked again.
    const ordered = all.filter(n => next.includes(n));
    this.selected = ordered.length === all.length ? null : ordered;
    return this.requestContext();
  }

  selectAll(): IContextRequest {
    this.selected = null;
    return this.requestContext();
  }

  isSelected(name: string): boolean {
    return this.selected === null || this.selected.includes(name);
  }

  beginAsk(prompt: string, attempts: number | null, allow: string[] | null = null): IAskRequest {
    const id = newAskId();
    this._asks.unshift(this._newAsk(id, 'panel', prompt.trim(), this.selected));
    this.notice = null;
    this._emit();
    return askRequest(id, prompt.trim(), this.selected, attempts, allow);
  }

  markCancelling(): void {
    const ask = this.running;
    if (ask) {
      ask.status = 'cancelling';
      this._emit();
    }
  }

  markInserted(id: string): void {
    const ask = this._asks.find(a => a.id === id);
    if (ask) {
      ask.inserted = true;
      this._emit();
    }
  }

  /** The kernel went idle: a %%ask cell that failed before its `done` event will say no more. */
  kernelIdle(): void {
    this._abandonRunning('The cell finished without a result; its output says why.', 'cell');
  }

  // ---- messages from the kernel ---------------------------------------------------------------------------

  handle(msg: KernelMessage): void {
    switch (msg.type) {
      case 'announce':
        return; // handled by the connection: it answers with hello
      case 'ready':
        this.kernelVersion = msg.version;
        // Asks followed before the connection (a page reloaded while one ran) are rebuilt from the kernel's
        // replay, which follows `ready`: drop what was pieced together from the middle of their events.
        this._asks = this._asks.filter(a => !this._adopted.has(a.id));
        this._adopted.clear();
        this.setConnection('ready');
        return;
      case 'frames': {
        this.frames = msg.frames;
        const names = msg.frames.map(f => f.name);
        if (this.selected !== null) {
          this.selected = this.selected.filter(n => names.includes(n));
        }
        break;
      }
      case 'context':
        this.context = { status: 'ready', text: msg.text, tokens: msg.tokens, error: null };
        break;
      case 'event':
        this._event(msg);
        break;
      case 'result': {
        const ask = this._asks.find(a => a.id === msg.ask_id);
        if (!ask) {
          return;
        }
        ask.status = msg.ok ? 'ok' : 'failed';
        ask.cells = msg.cells;
        ask.usage = msg.usage;
        ask.notes = msg.notes;
        if (msg.files !== undefined) {
          ask.files = parseFiles(msg.files);
        }
        ask.finishedAt = this.now();
        break;
      }
      case 'error': {
        const ask = msg.ask_id === null ? undefined : this._asks.find(a => a.id === msg.ask_id);
        if (ask) {
          const cancelled = ask.status === 'cancelling' || /cancelled/i.test(msg.message);
          ask.status = cancelled ? 'cancelled' : 'error';
          ask.message = msg.message;
          ask.finishedAt = this.now();
        } else if (this.context.status === 'loading') {
          this.context = { ...this.context, status: 'error', error: msg.message };
        } else {
          this.notice = msg.message;
        }
        break;
      }
      case 'insert':
        return; // the wiring inserts the cells; nothing to show here
    }
    this._emit();
  }

  /**
   * An event the kernel sent to another page's comm (seen on iopub): shown while this page is not connected yet,
   * e.g. reloaded while an ask runs, its own hello queued until the kernel is idle.
   */
  adopt(msg: IEventMessage): void {
    if (this.connection === 'ready') {
      return; // our own comm delivers every event
    }
    if (!this._asks.some(a => a.id === msg.ask_id)) {
      this._adopted.add(msg.ask_id);
    }
    this.handle(msg);
  }

  private _event(msg: IEventMessage): void {
    let ask = this._asks.find(a => a.id === msg.ask_id);
    if (!ask) {
      // A %%ask cell (or another tab's panel ask): show it too, so progress is visible in one place.
      ask = this._newAsk(msg.ask_id, msg.origin, '', null);
      this._asks.unshift(ask);
    }
    const data = msg.data;
    const kind: EventKind = msg.kind;
    if (kind === 'context') {
      ask.contextTokens = Number(data.tokens ?? 0);
      return;
    }
    if (kind === 'vote') {
      const chosen = typeof data.chosen_attempt === 'number' ? data.chosen_attempt : null;
      ask.attempts.forEach(a => (a.chosen = a.number === chosen));
      ask.votes = Array.isArray(data.votes) ? (data.votes as number[]).map(Number) : [];
      return;
    }
    if (kind === 'answer_start') {
      ask.summing = true;
      return;
    }
    if (kind === 'answer') {
      // Not an attempt: the words come after the working run (or a failed ask's best effort), text only.
      ask.summing = false;
      const text = typeof data.text === 'string' ? data.text : null;
      if (data.best_effort) {
        ask.bestEffort = text;
      } else {
        ask.answer = text;
      }
      return;
    }
    if (kind === 'done') {
      ask.summing = false;
      ask.doubt = typeof data.doubt === 'string' ? data.doubt : null;
      ask.answer = typeof data.answer === 'string' ? data.answer : ask.answer;
      ask.bestEffort = typeof data.best_effort === 'string' ? data.best_effort : ask.bestEffort;
      // Every ask's files come with `done` (a panel ask's `result` repeats them; a %%ask cell sends no result).
      if (data.files !== undefined) {
        ask.files = parseFiles(data.files);
      }
      if (!isFinished(ask.status) && ask.origin === 'cell') {
        ask.status = data.ok ? 'ok' : 'failed';
        ask.finishedAt = this.now();
        // A %%ask cell sends no result message: its warnings (e.g. no OS isolation) come with `done`.
        if (Array.isArray(data.warnings)) {
          ask.notes = (data.warnings as unknown[]).map(String);
        }
      }
      return;
    }
    // Each event names its attempt: samples drawn in one batch stream at once, their tokens interleaved, so
    // nothing here may assume that only the newest attempt is live.
    let attempt = ask.attempts.find(a => a.number === msg.attempt);
    if (!attempt) {
      attempt = emptyAttempt(msg.attempt);
      const later = ask.attempts.findIndex(a => a.number > msg.attempt);
      ask.attempts.splice(later < 0 ? ask.attempts.length : later, 0, attempt); // kept in number order
    }
    switch (kind) {
      case 'model_start':
        attempt.phase = 'waiting';
        attempt.sample = data.sample !== undefined && data.sample !== null;
        break;
      case 'token':
        attempt.phase = 'writing';
        attempt.text += String(data.text ?? '');
        break;
      case 'model_done':
        attempt.promptTokens = Number(data.prompt_tokens ?? 0);
        attempt.completionTokens = Number(data.completion_tokens ?? 0);
        attempt.modelSeconds = Number(data.seconds ?? 0);
        break;
      case 'code':
        attempt.code = String(data.code ?? '');
        attempt.phase = 'running';
        break;
      case 'no_code':
        attempt.phase = 'no_code';
        attempt.problem = String(data.problem ?? '');
        break;
      case 'output':
        attempt.phase = 'running';
        applyOps(attempt.outputs, Array.isArray(data.ops) ? (data.ops as JSONDict[]) : []);
        break;
      case 'exec_done':
        attempt.phase = data.outcome === 'ok' ? 'ok' : 'failed';
        attempt.outputs = Array.isArray(data.outputs) ? (data.outputs as JSONDict[]) : [];
        attempt.error = typeof data.error === 'string' ? data.error : null;
        attempt.execSeconds = Number(data.seconds ?? 0);
        break;
      case 'retry':
        attempt.problem = String(data.problem ?? '');
        break;
    }
  }

  private _newAsk(id: string, origin: 'panel' | 'cell', prompt: string, frames: string[] | null): IAskView {
    return {
      id,
      origin,
      prompt,
      frames,
      status: 'running',
      attempts: [],
      contextTokens: null,
      cells: null,
      usage: null,
      votes: null,
      answer: null,
      doubt: null,
      bestEffort: null,
      summing: false,
      notes: [],
      files: [],
      message: null,
      startedAt: this.now(),
      finishedAt: null,
      inserted: false
    };
  }

  private _abandonRunning(message: string, origin?: 'panel' | 'cell'): void {
    for (const ask of this._asks) {
      if (!isFinished(ask.status) && (origin === undefined || ask.origin === origin)) {
        ask.status = ask.status === 'cancelling' ? 'cancelled' : 'error';
        ask.message = message;
        ask.finishedAt = this.now();
      }
    }
  }

  private _emit(): void {
    this._changed.emit();
  }
}
