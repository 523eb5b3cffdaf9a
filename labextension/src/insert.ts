/**
 * Putting generated cells into a notebook: below their anchor cell, replacing what an earlier run of the same
 * anchor generated, and never twice (two views of one notebook both receive the kernel's `insert`).
 *
 * `planInsertion` is pure (unit-tested); `applyInsertion` performs the plan on a shared notebook model.
 */

import type { SharedCell } from '@jupyter/ydoc';

import type { JSONDict } from './protocol';
import { METADATA_KEY, provenanceOf } from './protocol';

/** The part of a cell the planner looks at. */
export interface ICellLike {
  id: string;
  metadata: unknown;
}

export type InsertionPlan =
  | { kind: 'duplicate' } // this insertion_id is already in the notebook
  | { kind: 'no-anchor' } // the anchor cell is not in this notebook (or was deleted)
  | { kind: 'insert'; remove: number[]; index: number }; // delete `remove` (descending), then insert at index

/**
 * How cells are placed: `replace` (a `%%ask` result) right below `anchorId` after deleting the cells an earlier
 * run generated for the same anchor (wherever the user moved them), so re-running a `%%ask` cell does not pile
 * up results; `below` (the panel's insert) right below it, deleting nothing; `append` (an agent's calls, served
 * by `%ask_serve`) after the anchor and the last cell already appended to it, so calls stay in their order.
 */
export type InsertMode = 'replace' | 'below' | 'append';

export function planInsertion(
  cells: readonly ICellLike[],
  anchorId: string,
  insertionId: string,
  mode: InsertMode = 'replace'
): InsertionPlan {
  if (cells.some(c => provenanceOf(c.metadata)?.insertion_id === insertionId)) {
    return { kind: 'duplicate' };
  }
  const anchor = cells.findIndex(c => c.id === anchorId);
  if (anchor < 0) {
    return { kind: 'no-anchor' };
  }
  if (mode === 'append') {
    let last = anchor;
    cells.forEach((c, i) => {
      if (provenanceOf(c.metadata)?.appended_to === anchorId) {
        last = Math.max(last, i);
      }
    });
    return { kind: 'insert', remove: [], index: last + 1 };
  }
  const remove: number[] = [];
  cells.forEach((c, i) => {
    if (mode === 'replace' && provenanceOf(c.metadata)?.anchor_cell_id === anchorId) {
      remove.push(i);
    }
  });
  // Deleting cells above the anchor (the user may have moved generated cells) shifts it up.
  const shift = remove.filter(i => i < anchor).length;
  return { kind: 'insert', remove: remove.reverse(), index: anchor - shift + 1 };
}

/**
 * Cells from the kernel, made ready for `insertCells`: without an `id` (the notebook assigns fresh ones, so
 * a second copy can never clash) and with copied metadata (the message object is not shared with the model).
 */
export function prepareCells(cells: readonly JSONDict[]): SharedCell.Cell[] {
  return cells.map(cell => {
    const { id: _id, ...rest } = cell;
    const metadata = { ...((rest.metadata as JSONDict | undefined) ?? {}) };
    const provenance = metadata[METADATA_KEY];
    if (provenance && typeof provenance === 'object') {
      metadata[METADATA_KEY] = { ...(provenance as JSONDict) };
    }
    return { ...rest, metadata, cell_type: String(rest.cell_type) } as SharedCell.Cell;
  });
}

/** The subset of `ISharedNotebook` used here, so tests can pass a plain object. */
export interface ISharedNotebookLike {
  cells: readonly { getId(): string; getMetadata(): unknown }[];
  transact(f: () => void): void;
  deleteCell(index: number): void;
  insertCells(index: number, cells: SharedCell.Cell[]): unknown;
}

export type InsertionOutcome = 'inserted' | 'duplicate' | 'no-anchor';

export function applyInsertion(
  notebook: ISharedNotebookLike,
  anchorId: string,
  insertionId: string,
  cells: readonly JSONDict[],
  mode: InsertMode = 'replace'
): InsertionOutcome {
  const snapshot = notebook.cells.map(c => ({ id: c.getId(), metadata: c.getMetadata() }));
  const plan = planInsertion(snapshot, anchorId, insertionId, mode);
  if (plan.kind !== 'insert') {
    return plan.kind;
  }
  const prepared = prepareCells(cells);
  // One transaction: one undo step, and collaborators never see the old cells gone but the new ones missing.
  notebook.transact(() => {
    for (const index of plan.remove) {
      notebook.deleteCell(index);
    }
    notebook.insertCells(plan.index, prepared);
  });
  return 'inserted';
}
