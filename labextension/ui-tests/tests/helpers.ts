import * as fs from 'fs';
import * as path from 'path';

import { APIRequestContext, expect, Locator, Page } from '@playwright/test';

export const ARTIFACTS = path.resolve(__dirname, '../../../test-artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

declare global {
  interface Window {
    // Exposed by --LabApp/--JupyterNotebookApp.expose_app_in_browser (start-lab.sh).
    jupyterapp: {
      name: string;
      hasPlugin(id: string): boolean;
      isPluginActivated(id: string): boolean;
      commands: { execute(id: string, args?: unknown): Promise<unknown>; hasCommand(id: string): boolean };
      shell: { currentWidget: any };
    };
  }
}

export const SETUP = [
  '%load_ext ci_magic',
  'import pandas as pd',
  "sales = pd.DataFrame({'region': ['north', 'south', 'north', 'west'], 'revenue': [10.0, 20.0, 30.0, 5.0]})"
].join('\n');

let cellCounter = 0;
function cell(source: string, type: 'code' | 'markdown' = 'code'): Record<string, unknown> {
  cellCounter += 1;
  const base = { id: `cell-${cellCounter}`, cell_type: type, metadata: {}, source };
  return type === 'code' ? { ...base, execution_count: null, outputs: [] } : base;
}

/**
 * Write a notebook through the contents API, then open it and wait for its kernel. `app`: JupyterLab
 * (`/lab/tree/<name>`) or Notebook 7 (`/notebooks/<name>`); the page must be served by that frontend.
 */
export async function openNotebook(
  page: Page,
  name: string,
  sources: string[],
  app: 'lab' | 'notebook' = 'lab'
): Promise<void> {
  const content = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
    cells: sources.map(s => cell(s))
  };
  const put = await page.request.put(`/api/contents/${name}`, { data: { type: 'notebook', content } });
  expect(put.ok()).toBeTruthy();
  // ?reset: no tabs restored from the previous test (Notebook 7 shows one document per page anyway).
  await page.goto(app === 'lab' ? `/lab/tree/${name}?reset` : `/notebooks/${name}`);
  await expect(cells(page).first()).toBeVisible();
  // The status indicator says "idle" before a kernel exists; wait for the kernel itself.
  await page.evaluate(async () => {
    const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
    await ctx.ready;
    await ctx.session.kernel.info;
  });
  await waitIdle(page);
  // Commands act on the current notebook: focus it first.
  await cells(page).first().locator('.jp-InputPrompt').click();
}

/** Run one cell (0-based) and wait until the kernel is idle again. */
export async function runCell(page: Page, index: number): Promise<void> {
  await cells(page).nth(index).locator('.jp-InputPrompt').click();
  await command(page, 'notebook:run-cell');
  await expect(cells(page).nth(index).locator('.jp-InputPrompt')).not.toHaveText(/\[[\s*]*\]/);
  await waitIdle(page);
}

/** Run every cell and wait until the kernel has finished them. */
export async function runAll(page: Page): Promise<void> {
  await command(page, 'notebook:run-all-cells');
  await expect(cells(page).first().locator('.jp-InputPrompt')).not.toHaveText(/\[\s*\]/);
  await waitIdle(page);
}

export async function waitIdle(page: Page): Promise<void> {
  await expect(
    page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
  ).toBeVisible();
}

export async function command(page: Page, id: string): Promise<void> {
  await page.evaluate(cmd => window.jupyterapp.commands.execute(cmd), id);
}

/** Start a command without waiting for it (`notebook:run-cell` resolves only when the cell has finished). */
export async function start(page: Page, id: string): Promise<void> {
  await page.evaluate(cmd => {
    void window.jupyterapp.commands.execute(cmd);
  }, id);
}

export function cells(page: Page): Locator {
  return page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
}

export function panel(page: Page): Locator {
  return page.locator('#ci-magic-panel');
}

export async function shutdownAll(request: APIRequestContext): Promise<void> {
  const sessions = (await (await request.get('/api/sessions')).json()) as { id: string }[];
  for (const s of sessions) {
    await request.delete(`/api/sessions/${s.id}`);
  }
}

export function artifact(name: string): string {
  return path.join(ARTIFACTS, name);
}
