import { describe, expect, it } from 'vitest';

import { CIMagicModel, costOf, terminalText, tokensSoFar } from '../src/model';
import { IEventMessage, KernelMessage } from '../src/protocol';

function ready(): CIMagicModel {
  const model = new CIMagicModel();
  let t = 1000;
  model.now = () => (t += 500);
  model.handle({ v: 1, type: 'ready', version: '0.1.0' });
  model.handle({
    v: 1,
    type: 'frames',
    frames: [
      { name: 'sales', kind: 'DataFrame', shape: [3, 2] },
      { name: 's', kind: 'Series', shape: [3] }
    ]
  });
  return model;
}

const ev = (ask_id: string, kind: IEventMessage['kind'], attempt: number, data = {}): KernelMessage => ({
  v: 1,
  type: 'event',
  ask_id,
  origin: 'panel',
  kind,
  attempt,
  data
});

describe('CIMagicModel', () => {
  it('follows an ask through a failed attempt, a repair and the result', () => {
    const model = ready();
    let changes = 0;
    model.changed.connect(() => (changes += 1));
    const req = model.beginAsk('  Plot revenue  ', 2);
    expect(req).toMatchObject({ type: 'ask', prompt: 'Plot revenue', frames: null, attempts: 2 });
    const id = req.ask_id;
    model.handle(ev(id, 'context', 0, { text: '...', tokens: 40 }));
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'token', 1, { text: 'Here is code: ' }));
    model.handle(ev(id, 'token', 1, { text: '12345678' }));
    let ask = model.asks[0];
    expect(ask.attempts[0]).toMatchObject({ phase: 'writing', text: 'Here is code: 12345678' });
    expect(tokensSoFar(ask)).toEqual({ prompt: 0, completion: 6, estimated: true }); // 22 chars / 4
    model.handle(ev(id, 'model_done', 1, { prompt_tokens: 100, completion_tokens: 10, seconds: 0.5 }));
    model.handle(ev(id, 'code', 1, { code: 'x = 1/0' }));
    expect(model.asks[0].attempts[0].phase).toBe('running');
    model.handle(ev(id, 'exec_done', 1, { outcome: 'error', outputs: [], error: 'ZeroDivisionError: x', seconds: 0.1 }));
    model.handle(ev(id, 'retry', 1, { problem: 'fix it' }));
    model.handle(ev(id, 'model_start', 2));
    model.handle(ev(id, 'model_done', 2, { prompt_tokens: 150, completion_tokens: 12, seconds: 0.4 }));
    model.handle(ev(id, 'code', 2, { code: 'plot()' }));
    const png = { output_type: 'display_data', data: { 'image/png': 'iVBOR' }, metadata: {} };
    model.handle(ev(id, 'exec_done', 2, { outcome: 'ok', outputs: [png], error: null, seconds: 0.2 }));
    ask = model.asks[0];
    expect(ask.attempts.map(a => [a.phase, a.error])).toEqual([
      ['failed', 'ZeroDivisionError: x'],
      ['ok', null]
    ]);
    expect(tokensSoFar(ask)).toEqual({ prompt: 250, completion: 22, estimated: false });
    expect(model.running).toBe(ask);
    model.handle({
      v: 1,
      type: 'result',
      ask_id: id,
      ok: true,
      cells: [{ cell_type: 'code' }],
      usage: { prompt_tokens: 250, completion_tokens: 22, total_tokens: 272, estimated: false },
      attempts: 2,
      notes: ['brought back: x']
    });
    expect(ask).toMatchObject({ status: 'ok', notes: ['brought back: x'], contextTokens: 40 });
    expect(ask.finishedAt! - ask.startedAt).toBeGreaterThan(0);
    expect(model.running).toBeNull();
    expect(changes).toBeGreaterThan(10);
  });

  it('shows the outputs of a running attempt as they arrive, and the finished run in their place', () => {
    const model = ready();
    const id = model.beginAsk('Count slowly', 3).ask_id;
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'code', 1, { code: 'for i in range(3): print(i)' }));
    model.handle(ev(id, 'output', 1, { ops: [{ op: 'stream', name: 'stdout', text: '0\n' }] }));
    expect(model.asks[0].attempts[0]).toMatchObject({ phase: 'running', outputs: [{ text: '0\n' }] });
    const bar = { output_type: 'display_data', data: { 'text/plain': '10%' }, metadata: {} };
    model.handle(
      ev(id, 'output', 1, {
        ops: [
          { op: 'stream', name: 'stdout', text: '1\n' },
          { op: 'output', output: bar, display_id: 'bar' },
          { op: 'update', display_id: 'bar', data: { 'text/plain': '50%' } }
        ]
      })
    );
    let outputs = model.asks[0].attempts[0].outputs;
    expect(outputs.map(o => o.text ?? (o.data as { 'text/plain': string })['text/plain'])).toEqual(['0\n1\n', '50%']);
    model.handle(ev(id, 'output', 1, { ops: [{ op: 'clear' }, { op: 'stream', name: 'stderr', text: 'x' }] }));
    expect(model.asks[0].attempts[0].outputs).toEqual([{ output_type: 'stream', name: 'stderr', text: 'x' }]);
    const final = [{ output_type: 'stream', name: 'stdout', text: '0\n1\n2\n' }];
    model.handle(ev(id, 'exec_done', 1, { outcome: 'ok', outputs: final, error: null, seconds: 3 }));
    outputs = model.asks[0].attempts[0].outputs;
    expect(outputs).toEqual(final);
  });

  it('shows a stream as a terminal would: a carriage return redraws its line', () => {
    expect(terminalText('start\n\rbar 10%\rbar 50%\rbar 100%\r\ndone\n')).toBe('start\nbar 100%\ndone\n');
  });

  it('follows an ask seen on another comm until connected, then keeps only the replayed one', () => {
    const model = new CIMagicModel();
    model.setConnection('connecting');
    const seen = ev('cell-9', 'output', 2, { ops: [{ op: 'stream', name: 'stdout', text: 'late\n' }] });
    model.adopt(seen as IEventMessage);
    expect(model.asks.map(a => a.id)).toEqual(['cell-9']);
    model.handle({ v: 1, type: 'ready', version: 'x' });
    expect(model.asks).toEqual([]); // the replay that follows `ready` rebuilds it from its start
    model.handle(ev('cell-9', 'model_start', 1));
    model.adopt(ev('cell-9', 'model_start', 2) as IEventMessage); // connected: our own comm delivers
    expect(model.asks[0].attempts.map(a => a.number)).toEqual([1]);
  });

  it('shows the answer in words apart from the attempts, and a failed ask only as a best effort', () => {
    const model = ready();
    const id = model.beginAsk('Mean price?', 3).ask_id;
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'code', 1, { code: 'print(df.price.mean())' }));
    model.handle(ev(id, 'exec_done', 1, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    model.handle(ev(id, 'answer_start', 0, { best_effort: false }));
    expect(model.asks[0].summing).toBe(true);
    model.handle(ev(id, 'answer', 0, { text: 'The mean price is 4.2.', best_effort: false }));
    model.handle(ev(id, 'done', 1, { ok: true, answer: 'The mean price is 4.2.', doubt: null, best_effort: null }));
    const ask = model.asks[0];
    expect(ask.attempts.map(a => a.number)).toEqual([1]); // the words step is not an attempt
    expect(ask).toMatchObject({ answer: 'The mean price is 4.2.', doubt: null, bestEffort: null, summing: false });

    const failed = model.beginAsk('Median?', 1).ask_id;
    model.handle(ev(failed, 'model_start', 1));
    model.handle(ev(failed, 'exec_done', 1, { outcome: 'error', outputs: [], error: 'KeyError', seconds: 0.1 }));
    model.handle(ev(failed, 'answer_start', 0, { best_effort: true }));
    model.handle(ev(failed, 'answer', 0, { text: '@median[3]', best_effort: true }));
    model.handle({
      v: 1,
      type: 'result',
      ask_id: failed,
      ok: false,
      cells: [{ cell_type: 'code' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, estimated: false },
      attempts: 1,
      notes: []
    });
    const other = model.asks[0];
    expect(other).toMatchObject({ status: 'failed', answer: null, bestEffort: '@median[3]' });
    expect(other.attempts).toHaveLength(1);
  });

  it('labels samples drawn for a vote and marks the chosen one', () => {
    const model = ready();
    const id = model.beginAsk('Sum of x', 3).ask_id;
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'exec_done', 1, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    model.handle(ev(id, 'model_start', 2, { sample: 2 }));
    model.handle(ev(id, 'exec_done', 2, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    model.handle(ev(id, 'model_start', 3, { sample: 3 }));
    model.handle(ev(id, 'exec_done', 3, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    model.handle(ev(id, 'vote', 3, { chosen_attempt: 2, votes: [1, 2] }));
    const ask = model.asks[0];
    expect(ask.attempts.map(a => [a.number, a.sample, a.chosen])).toEqual([
      [1, false, false],
      [2, true, true],
      [3, true, false]
    ]);
    expect(ask.votes).toEqual([1, 2]);
  });

  it('keeps each attempt apart when a batch of samples streams at once, tokens interleaved', () => {
    const model = ready();
    const id = model.beginAsk('Sum of x', 5).ask_id;
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'token', 1, { text: 'one' }));
    model.handle(ev(id, 'model_done', 1, { prompt_tokens: 100, completion_tokens: 10, seconds: 0.5 }));
    model.handle(ev(id, 'code', 1, { code: 'a = 1' }));
    model.handle(ev(id, 'exec_done', 1, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    // Samples 2 and 3 in one request: both start before any token, then their tokens alternate.
    model.handle(ev(id, 'model_start', 2, { sample: 2 }));
    model.handle(ev(id, 'model_start', 3, { sample: 3 }));
    let ask = model.asks[0];
    expect(ask.attempts.map(a => [a.number, a.phase, a.sample])).toEqual([
      [1, 'ok', false],
      [2, 'waiting', true],
      [3, 'waiting', true]
    ]);
    model.handle(ev(id, 'token', 3, { text: 'Third ' }));
    model.handle(ev(id, 'token', 2, { text: 'Second ' }));
    model.handle(ev(id, 'token', 3, { text: 'answer' }));
    model.handle(ev(id, 'token', 2, { text: 'answer!' }));
    ask = model.asks[0];
    expect(ask.attempts.map(a => [a.number, a.phase, a.text])).toEqual([
      [1, 'ok', 'one'],
      [2, 'writing', 'Second answer!'],
      [3, 'writing', 'Third answer']
    ]);
    // Both replies are being estimated at once: 14 and 12 characters, 4 characters a token, rounded up.
    expect(tokensSoFar(ask)).toEqual({ prompt: 100, completion: 10 + 4 + 3, estimated: true });
    // Each is done, then judged in turn; one finishing does not touch the other.
    model.handle(ev(id, 'model_done', 2, { prompt_tokens: 90, completion_tokens: 5, seconds: 1 }));
    model.handle(ev(id, 'model_done', 3, { prompt_tokens: 90, completion_tokens: 4, seconds: 1 }));
    model.handle(ev(id, 'code', 2, { code: 'b = 2' }));
    expect(ask.attempts.map(a => a.phase)).toEqual(['ok', 'running', 'writing']);
    model.handle(ev(id, 'exec_done', 2, { outcome: 'error', outputs: [], error: 'E: 2', seconds: 0.1 }));
    model.handle(ev(id, 'code', 3, { code: 'c = 3' }));
    model.handle(ev(id, 'exec_done', 3, { outcome: 'ok', outputs: [], error: null, seconds: 0.1 }));
    model.handle(ev(id, 'vote', 3, { chosen_attempt: 3, votes: [2] }));
    expect(ask.attempts.map(a => [a.number, a.phase, a.code, a.error, a.completionTokens, a.chosen])).toEqual([
      [1, 'ok', 'a = 1', null, 10, false],
      [2, 'failed', 'b = 2', 'E: 2', 5, false],
      [3, 'ok', 'c = 3', null, 4, true]
    ]);
    expect(tokensSoFar(ask)).toEqual({ prompt: 280, completion: 19, estimated: false });
  });

  it('keeps attempts in number order whatever order their first events arrive in', () => {
    const model = ready();
    const id = model.beginAsk('q', null).ask_id;
    model.handle(ev(id, 'model_start', 1));
    model.handle(ev(id, 'token', 5, { text: 'five' }));
    model.handle(ev(id, 'token', 4, { text: 'four' }));
    expect(model.asks[0].attempts.map(a => [a.number, a.text])).toEqual([
      [1, ''],
      [4, 'four'],
      [5, 'five']
    ]);
  });

  it("lists a panel ask's files from done, then from its result", () => {
    const model = ready();
    const id = model.beginAsk('Save a summary', null).ask_id;
    const csv = { path: 'summary.csv', bytes: 40, sha256: 'ab', saved_as: 'summary (2).csv', note: 'renamed' };
    const png = { path: 'chart.png', bytes: 900, sha256: 'cd', saved_as: 'chart.png', note: null };
    model.handle(ev(id, 'done', 1, { ok: true, warnings: [], files: [csv] }));
    expect(model.asks[0]).toMatchObject({ status: 'running', files: [csv] });
    const result = {
      v: 1 as const,
      type: 'result' as const,
      ask_id: id,
      ok: true,
      cells: [],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, estimated: false },
      attempts: 1,
      notes: []
    };
    model.handle({ ...result, files: [csv, png] });
    expect(model.asks[0]).toMatchObject({ status: 'ok', files: [csv, png] });
    // A kernel whose result has no files field (older v1) keeps what done said; an ask without files has none.
    const other = model.beginAsk('Just print', null).ask_id;
    model.handle(ev(other, 'done', 1, { ok: true, warnings: [] }));
    model.handle({ ...result, ask_id: other });
    expect(model.asks[0]).toMatchObject({ status: 'ok', files: [] });
  });

  it("lists a %%ask cell's files from its done event, and remembers the notebook's folder", () => {
    const model = ready();
    model.setFolder('reports/q2');
    const png = { path: 'revenue chart.png', bytes: 9000, sha256: 'ef', saved_as: 'revenue chart.png', note: null };
    const event = ev('cell-9', 'done', 1, { ok: true, warnings: [], files: [png, { bytes: 1 }] }) as IEventMessage;
    model.handle({ ...event, origin: 'cell' });
    expect(model.asks[0]).toMatchObject({ id: 'cell-9', status: 'ok', files: [png] });
    expect(model.folder).toBe('reports/q2');
  });

  it('shows %%ask cells it did not start, and closes them when the kernel goes idle without done', () => {
    const model = ready();
    model.handle({ ...(ev('cell-1', 'context', 0, { tokens: 5 }) as IEventMessage), origin: 'cell' });
    const warnings = ['the sandbox runs without OS isolation (no tool): The network is NOT blocked.'];
    model.handle({ ...(ev('cell-1', 'done', 1, { ok: true, warnings }) as IEventMessage), origin: 'cell' });
    expect(model.asks[0]).toMatchObject({ id: 'cell-1', origin: 'cell', status: 'ok', prompt: '', notes: warnings });
    model.handle({ ...(ev('cell-2', 'model_start', 1) as IEventMessage), origin: 'cell' });
    model.kernelIdle();
    expect(model.asks[0]).toMatchObject({ id: 'cell-2', status: 'error' });
    expect(model.asks.map(a => a.id)).toEqual(['cell-2', 'cell-1']);
  });

  it('turns an error after Cancel into a cancelled ask, and other errors into error', () => {
    const model = ready();
    const first = model.beginAsk('slow', null).ask_id;
    model.markCancelling();
    expect(model.running?.status).toBe('cancelling');
    model.handle({ v: 1, type: 'error', ask_id: first, message: 'The ask was cancelled while the model was writing' });
    expect(model.asks[0].status).toBe('cancelled');
    const second = model.beginAsk('bad', null).ask_id;
    model.handle({ v: 1, type: 'error', ask_id: second, message: 'Could not connect to the model server' });
    expect(model.asks[0]).toMatchObject({ status: 'error', message: 'Could not connect to the model server' });
    expect(model.asks.length).toBe(2);
  });

  it('keeps the frame selection and the context preview in step', () => {
    const model = ready();
    expect(model.isSelected('s')).toBe(true);
    expect(model.toggleFrame('s')).toEqual({ v: 1, type: 'context', frames: ['sales'] });
    expect(model.context.status).toBe('loading');
    model.handle({ v: 1, type: 'context', text: 'sales: DataFrame', tokens: 12, frames: ['sales'] });
    expect(model.context).toEqual({ status: 'ready', text: 'sales: DataFrame', tokens: 12, error: null });
    expect(model.beginAsk('q', null).frames).toEqual(['sales']);
    // Picking everything again means "all", so frames created later are included too.
    expect(model.toggleFrame('s').frames).toBeNull();
    model.toggleFrame('sales');
    model.handle({ v: 1, type: 'frames', frames: [{ name: 's', kind: 'Series', shape: [3] }] });
    expect(model.selected).toEqual(['s']);
    model.requestContext();
    model.handle({ v: 1, type: 'error', ask_id: null, message: 'no variable of that name' });
    expect(model.context).toMatchObject({ status: 'error', error: 'no variable of that name' });
  });

  it('forgets kernel state when the connection drops, failing a running ask', () => {
    const model = ready();
    model.beginAsk('q', null);
    model.setConnection('not-loaded');
    expect(model.frames).toBeNull();
    expect(model.asks[0].status).toBe('error');
  });
});

describe('costOf', () => {
  it('prices prompt and completion tokens per million', () => {
    expect(costOf({ prompt: 1_000_000, completion: 500_000 }, { input: 2, output: 8 })).toBeCloseTo(6);
    expect(costOf({ prompt: 10, completion: 10 }, { input: 0, output: 0 })).toBe(0);
  });
});
