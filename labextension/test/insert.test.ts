import { describe, expect, it } from 'vitest';

import { applyInsertion, ICellLike, planInsertion, prepareCells } from '../src/insert';

const gen = (id: string, anchor: string | null, insertion: string): ICellLike => ({
  id,
  metadata: { ci_magic: { anchor_cell_id: anchor, insertion_id: insertion } }
});
const plain = (id: string): ICellLike => ({ id, metadata: {} });

describe('planInsertion', () => {
  it('inserts right below the anchor', () => {
    expect(planInsertion([plain('a'), plain('ask'), plain('b')], 'ask', 'new')).toEqual({
      kind: 'insert',
      remove: [],
      index: 2
    });
  });

  it('replaces the cells an earlier run of the same anchor generated, wherever they are', () => {
    const cells = [gen('moved', 'ask', 'old'), plain('ask'), gen('c1', 'ask', 'old'), gen('o', 'other', 'x')];
    // Removing index 0 shifts the anchor from 1 to 0, so the new cells go to index 1.
    expect(planInsertion(cells, 'ask', 'new')).toEqual({ kind: 'insert', remove: [2, 0], index: 1 });
  });

  it('keeps other cells when asked not to replace (panel inserts)', () => {
    const cells = [plain('ask'), gen('c1', 'ask', 'old')];
    expect(planInsertion(cells, 'ask', 'new', 'below')).toEqual({ kind: 'insert', remove: [], index: 1 });
  });

  it("appends an agent's calls in order after the anchor, replacing nothing (%ask_serve)", () => {
    const agent = (id: string, to: string, insertion: string): ICellLike => ({
      id,
      metadata: { ci_magic: { appended_to: to, insertion_id: insertion, anchor_cell_id: null } }
    });
    expect(planInsertion([plain('serve'), plain('b')], 'serve', 'n1', 'append')).toEqual({
      kind: 'insert',
      remove: [],
      index: 1
    });
    const cells = [plain('serve'), agent('a1', 'serve', 'n1'), agent('a2', 'serve', 'n2'), plain('b')];
    expect(planInsertion(cells, 'serve', 'n3', 'append')).toEqual({ kind: 'insert', remove: [], index: 3 });
    expect(planInsertion(cells, 'serve', 'n2', 'append')).toEqual({ kind: 'duplicate' });
  });

  it('is idempotent per insertion id, and reports a missing anchor', () => {
    expect(planInsertion([plain('ask'), gen('c', 'ask', 'same')], 'ask', 'same')).toEqual({ kind: 'duplicate' });
    expect(planInsertion([plain('a')], 'gone', 'new')).toEqual({ kind: 'no-anchor' });
  });
});

describe('applyInsertion', () => {
  /** A notebook as a list, with the same index semantics as ISharedNotebook. */
  function fakeNotebook(cells: ICellLike[]) {
    let transactions = 0;
    let created = 0;
    const nb = {
      list: cells.map(c => ({ ...c })),
      get cells() {
        return nb.list.map(c => ({ getId: () => c.id, getMetadata: () => c.metadata }));
      },
      transact(f: () => void) {
        transactions += 1;
        f();
      },
      deleteCell(index: number) {
        nb.list.splice(index, 1);
      },
      insertCells(index: number, newCells: { metadata?: unknown }[]) {
        nb.list.splice(index, 0, ...newCells.map(c => ({ id: `new-${++created}`, metadata: c.metadata })));
      },
      get transactions() {
        return transactions;
      }
    };
    return nb;
  }
  const kernelCells = (insertion: string) => [
    { id: 'from-kernel', cell_type: 'code', source: 'x', outputs: [], metadata: { ci_magic: { insertion_id: insertion, anchor_cell_id: 'ask' } } },
    { id: 'from-kernel-2', cell_type: 'markdown', source: 'r', metadata: { ci_magic: { insertion_id: insertion, anchor_cell_id: 'ask' } } }
  ];

  it('replaces the previous answer in one transaction, and ignores a repeated insert', () => {
    const nb = fakeNotebook([plain('a'), plain('ask'), plain('b')]);
    expect(applyInsertion(nb, 'ask', 'one', kernelCells('one'))).toBe('inserted');
    expect(applyInsertion(nb, 'ask', 'two', kernelCells('two'))).toBe('inserted');
    expect(applyInsertion(nb, 'ask', 'two', kernelCells('two'))).toBe('duplicate');
    expect(nb.list.map(c => c.id)).toEqual(['a', 'ask', 'new-3', 'new-4', 'b']);
    expect(nb.transactions).toBe(2);
  });

  it('gives the notebook cells without ids, so copies never clash', () => {
    const [code] = prepareCells(kernelCells('one'));
    expect(code).not.toHaveProperty('id');
    expect(code.cell_type).toBe('code');
  });
});
