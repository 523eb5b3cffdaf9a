import { describe, expect, it } from 'vitest';

import {
  askRequest,
  parseHosts,
  contextRequest,
  hello,
  parseFiles,
  parseKernelMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  provenanceOf
} from '../src/protocol';

describe('parseKernelMessage', () => {
  it('accepts every kernel message type with its fields', () => {
    const ok = [
      { v: 1, type: 'announce' },
      { v: 1, type: 'ready', version: '0.1.0' },
      { v: 1, type: 'event', ask_id: 'a', origin: 'cell', kind: 'token', attempt: 1, data: { text: 'x' } },
      { v: 1, type: 'insert', insertion_id: 'i', anchor_cell_id: 'c', cells: [] },
      { v: 1, type: 'frames', frames: [{ name: 'df', kind: 'DataFrame', shape: [2, 1] }] },
      { v: 1, type: 'context', text: 'df: ...', tokens: 3, frames: ['df'] },
      {
        v: 1,
        type: 'result',
        ask_id: 'a',
        ok: true,
        cells: [],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, estimated: false },
        attempts: 1,
        notes: []
      },
      {
        v: 1,
        type: 'result',
        ask_id: 'a',
        ok: true,
        cells: [],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, estimated: false },
        attempts: 1,
        notes: [],
        files: [{ path: 'q2.csv', bytes: 3, sha256: 'ab', saved_as: 'q2 (2).csv', note: 'saved as...' }]
      },
      { v: 1, type: 'error', ask_id: null, message: 'no such frame' },
      { v: 1, type: 'error', ask_id: 'a', message: 'cancelled' }
    ];
    for (const msg of ok) {
      expect(parseKernelMessage(msg)).toEqual(msg);
    }
  });

  it('reports another protocol version in words a user can act on', () => {
    expect(() => parseKernelMessage({ v: 2, type: 'ready', version: '9' })).toThrow(
      /speaks protocol v2, this extension v1.*install matching versions/
    );
  });

  it.each([
    [null, /not a message object/],
    [[1], /not a message object/],
    [{ v: 1, type: 'nope' }, /Unknown ci_magic message type "nope"/],
    [{ v: 1, type: 'insert', insertion_id: 'i', anchor_cell_id: null, cells: [] }, /anchor_cell_id is null/],
    [{ v: 1, type: 'event', ask_id: 'a', origin: 'cell', kind: 'token', attempt: '1', data: {} }, /attempt/],
    [{ v: 1, type: 'error', message: 'x' }, /ask_id is undefined, expected string\|null/],
    [
      { v: 1, type: 'result', ask_id: 'a', ok: true, cells: [], usage: {}, attempts: 1, notes: [], files: {} },
      /files is object, expected array\|undefined/
    ]
  ])('rejects %j', (data, message) => {
    expect(() => parseKernelMessage(data)).toThrow(ProtocolError);
    expect(() => parseKernelMessage(data)).toThrow(message);
  });
});

describe('parseFiles', () => {
  it('keeps well-formed entries and drops the rest', () => {
    const good = { path: 'out/a b.csv', bytes: 12, sha256: 'cd', saved_as: 'out/a b.csv', note: null };
    expect(parseFiles([good])).toEqual([good]);
    expect(
      parseFiles([
        { path: 'x.png', bytes: 5, sha256: 'ef' }, // saved_as and note absent: not copied, no note
        { path: 'y.csv', bytes: -1, sha256: 1, saved_as: '', note: 7 },
        { bytes: 3 },
        'z.txt',
        null
      ])
    ).toEqual([
      { path: 'x.png', bytes: 5, sha256: 'ef', saved_as: null, note: null },
      { path: 'y.csv', bytes: 0, sha256: '', saved_as: null, note: null }
    ]);
    expect(parseFiles(undefined)).toEqual([]);
    expect(parseFiles({ path: 'a' })).toEqual([]);
  });
});

describe('frontend messages', () => {
  it('carry the protocol version and the fields bridge.py reads', () => {
    expect(hello()).toEqual({ v: PROTOCOL_VERSION, type: 'hello' });
    expect(contextRequest(null)).toEqual({ v: 1, type: 'context', frames: null });
    expect(askRequest('id', 'Why?', ['df'], 2)).toEqual({
      v: 1,
      type: 'ask',
      ask_id: 'id',
      prompt: 'Why?',
      frames: ['df'],
      attempts: 2,
      allow: null
    });
    expect(askRequest('id', 'Why?', null, null, parseHosts('data.example.org, *.example.com'))).toMatchObject({
      allow: ['data.example.org', '*.example.com']
    });
    expect(parseHosts('  ,  ')).toBeNull();
  });
});

describe('provenanceOf', () => {
  it('reads metadata.ci_magic and ignores anything else', () => {
    expect(provenanceOf({ ci_magic: { insertion_id: 'i' } })).toEqual({ insertion_id: 'i' });
    expect(provenanceOf({ ci_magic: 'x' })).toBeNull();
    expect(provenanceOf(undefined)).toBeNull();
    expect(provenanceOf({})).toBeNull();
  });
});
