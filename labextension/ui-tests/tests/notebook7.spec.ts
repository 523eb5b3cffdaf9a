// Notebook 7 (`jupyter notebook`, no ILabShell): run by the `notebook7` project against its own server.
import { expect, test } from '@playwright/test';

import { artifact, cells, openNotebook, panel, runCell, SETUP, shutdownAll, start, waitIdle } from './helpers';

test.afterEach(async ({ request }) => {
  await shutdownAll(request);
});

test('Notebook 7: a %%ask cell gets its code and chart inserted directly below it; the panel opens', async ({
  page
}) => {
  const below = '# this cell was below the %%ask cell before it ran';
  await openNotebook(page, 'notebook7-ask.ipynb', [SETUP, '%%ask\nPlot revenue by region', below], 'notebook');
  expect(await page.evaluate(() => window.jupyterapp.name)).toBe('Jupyter Notebook');
  expect(await page.evaluate(() => window.jupyterapp.isPluginActivated('ci-magic-labextension:plugin'))).toBe(
    true
  );

  await runCell(page, 0);
  await runCell(page, 1);
  await expect(cells(page)).toHaveCount(5);
  await expect(cells(page).nth(1).locator('.jp-InputArea')).toContainText('Plot revenue by region');
  const code = cells(page).nth(2);
  await expect(code).toHaveClass(/jp-CodeCell/);
  await expect(code.locator('.jp-InputArea')).toContainText("groupby('region')['revenue'].sum()");
  await expect(code.locator('.jp-OutputArea-output img')).toBeVisible();
  await expect(code.locator('.jp-OutputArea-output').last()).toContainText("'north': 40.0");
  const record = cells(page).nth(3);
  await expect(record).toHaveClass(/jp-MarkdownCell/);
  await expect(record).toContainText('Attempt 1');
  await expect(cells(page).nth(4).locator('.jp-InputArea')).toContainText(below);
  // The generated cells carry their provenance, anchored to the %%ask cell.
  const provenance = await page.evaluate(() => {
    const model = window.jupyterapp.shell.currentWidget.content.model;
    const anchor = model.cells.get(1).id;
    return [2, 3].map(i => {
      const p = model.cells.get(i).getMetadata('ci_magic');
      return { anchored: p?.anchor_cell_id === anchor, role: p?.role };
    });
  });
  expect(provenance).toEqual([
    { anchored: true, role: 'code' },
    { anchored: true, role: 'record' }
  ]);
  await waitIdle(page);
  // The notebook scrolls inside its own panel, so fullPage alone would cut it: a taller window shows every cell.
  await page.setViewportSize({ width: 1400, height: 1500 });
  await page.screenshot({ path: artifact('notebook7-inserted.png'), fullPage: true });
  await page.setViewportSize({ width: 1400, height: 900 });

  // The Ask panel sits in Notebook 7's left sidebar: View > Left Sidebar > Show Ask about your data.
  await expect(panel(page)).toBeHidden();
  await page.getByRole('menuitem', { name: 'View' }).click();
  await page.locator('.lm-Menu-item', { hasText: 'Left Sidebar' }).hover();
  await page.locator('.lm-Menu-item', { hasText: 'Show Ask about your data (ci_magic)' }).click();
  const p = panel(page);
  await expect(p).toBeVisible();
  await expect(p.getByTestId('ci-frames')).toContainText('sales');
  const view = p.getByTestId('ci-ask-view').first(); // the %%ask cell's run, shown in the panel too
  await expect(view).toHaveAttribute('data-status', 'ok');
  await expect(view.getByTestId('ci-image').first()).toBeVisible();
  await page.screenshot({ path: artifact('notebook7-panel.png') });
});

test('Notebook 7: a running %%ask shows its printed lines as they come', async ({ page }) => {
  await openNotebook(page, 'notebook7-live.ipynb', [SETUP, '%%ask\nCount to six with a pause'], 'notebook');
  await runCell(page, 0);
  // The Ask panel, in Notebook 7's left sidebar, follows the cell's ask too.
  await page.getByRole('menuitem', { name: 'View' }).click();
  await page.locator('.lm-Menu-item', { hasText: 'Left Sidebar' }).hover();
  await page.locator('.lm-Menu-item', { hasText: 'Show Ask about your data (ci_magic)' }).click();
  await expect(panel(page)).toBeVisible();
  const cell = cells(page).nth(1);
  await cell.locator('.jp-InputPrompt').click();
  await start(page, 'notebook:run-cell'); // not waited for: the test watches it run
  await expect(cell).toContainText('running in the sandbox', { timeout: 60_000 });
  await expect(cell.locator('.jp-OutputArea')).toContainText('tick 0', { timeout: 2_000 });
  const attempt = panel(page).getByTestId('ci-ask-view').first().getByTestId('ci-attempt').last();
  await expect(attempt).toContainText('tick 0', { timeout: 2_000 });
  await expect(cell.locator('.jp-OutputArea')).not.toContainText('tick 5');
  await page.screenshot({ path: artifact('notebook7-live-output.png'), fullPage: true });
  await waitIdle(page);
  await expect(cells(page).nth(2).locator('.jp-OutputArea')).toContainText('tick 5');
});
