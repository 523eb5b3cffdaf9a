import { expect, test } from '@playwright/test';

import {
  artifact,
  cells,
  command,
  openNotebook,
  panel,
  runAll,
  runCell,
  SETUP,
  shutdownAll,
  waitIdle
} from './helpers';

test.afterEach(async ({ request }) => {
  await shutdownAll(request);
});

test('a %%ask cell gets its code and chart as real cells below it, replaced on re-run', async ({ page }) => {
  await openNotebook(page, 'cell-ask.ipynb', [SETUP, '%%ask\nPlot revenue by region']);
  // Cell by cell: the extension's hello reaches the kernel once `%load_ext` has finished (see README).
  await runCell(page, 0);
  await runCell(page, 1);
  await expect(cells(page)).toHaveCount(4);
  const code = cells(page).nth(2);
  await expect(code).toHaveClass(/jp-CodeCell/);
  await expect(code.locator('.jp-InputArea')).toContainText("groupby('region')['revenue'].sum()");
  await expect(code.locator('.jp-OutputArea-output img')).toBeVisible();
  await expect(code.locator('.jp-OutputArea-output').last()).toContainText("'north': 40.0");
  const record = cells(page).nth(3);
  await expect(record).toHaveClass(/jp-MarkdownCell/);
  await expect(record).toContainText('Attempt 1');
  await waitIdle(page);
  await page.screenshot({ path: artifact('cell-ask-inserted.png'), fullPage: true });

  // Running the %%ask cell again replaces its generated cells instead of piling up.
  await runCell(page, 1);
  await expect(cells(page).nth(2).locator('.jp-OutputArea-output img')).toBeVisible();
  await expect(cells(page)).toHaveCount(4);
});

test('the panel shows attempts, code, chart and tokens, and inserts the answer', async ({ page }) => {
  await openNotebook(page, 'panel-ask.ipynb', [SETUP, '# the answer goes below this cell']);
  await runAll(page);
  await command(page, 'ci-magic:open-panel');
  const p = panel(page);
  await expect(p.getByTestId('ci-frames')).toContainText('sales');
  await expect(p.getByTestId('ci-frames')).toContainText('DataFrame 4 × 2');
  await p.getByTestId('ci-context').locator('summary').click();
  await expect(p.getByTestId('ci-context')).toContainText("sales: DataFrame, 4 rows × 2 columns");

  await p.getByTestId('ci-prompt').fill('Chart revenue by region from the panel');
  await p.getByTestId('ci-ask').click();
  const view = p.getByTestId('ci-ask-view').first();
  await expect(view).toHaveAttribute('data-status', 'ok');
  const attempts = view.getByTestId('ci-attempt');
  await expect(attempts).toHaveCount(2);
  await expect(attempts.nth(0)).toContainText('revnue'); // the failed attempt's error is shown
  await expect(attempts.nth(0)).toContainText('failed');
  await expect(attempts.nth(1).getByTestId('ci-code')).toContainText("['revenue'].sum()");
  await expect(attempts.nth(1).getByTestId('ci-image')).toBeVisible();
  const tokens = Number((await view.getByTestId('ci-tokens').innerText()).replace(/[^0-9]/g, ''));
  expect(tokens).toBeGreaterThan(50);
  await p.screenshot({ path: artifact('panel-after-ask.png') });
  await attempts.nth(1).getByTestId('ci-image').scrollIntoViewIfNeeded();
  await p.screenshot({ path: artifact('panel-after-ask-chart.png') });

  await cells(page).nth(1).click(); // the active cell: the answer goes below it
  await view.getByTestId('ci-insert').click();
  await expect(cells(page)).toHaveCount(4);
  await expect(cells(page).nth(2).locator('.jp-InputArea')).toContainText("['revenue'].sum()");
  await expect(cells(page).nth(2).locator('.jp-OutputArea-output img')).toBeVisible();
  await expect(cells(page).nth(3)).toContainText('Attempt 2');
  await page.screenshot({ path: artifact('panel-inserted.png'), fullPage: true });
});

test('Cancel stops a slow ask and the kernel stays usable', async ({ page }) => {
  await openNotebook(page, 'cancel.ipynb', [SETUP]);
  await runAll(page);
  await command(page, 'ci-magic:open-panel');
  const p = panel(page);
  await expect(p.getByTestId('ci-frames')).toContainText('sales');
  await p.getByTestId('ci-prompt').fill('Think slowly about it');
  await p.getByTestId('ci-ask').click();
  const view = p.getByTestId('ci-ask-view').first();
  await expect(view).toContainText('the model is writing');
  await expect(view).toContainText('slowly and carefully');
  const started = Date.now();
  await p.getByTestId('ci-cancel').click();
  await expect(view).toHaveAttribute('data-status', 'cancelled', { timeout: 20_000 });
  expect(Date.now() - started).toBeLessThan(15_000);
  await expect(view).toContainText('cancelled');
  await expect(view).not.toContainText('too late');
  await page.screenshot({ path: artifact('panel-cancelled.png'), fullPage: true });

  // The kernel still answers, and a new ask can start.
  await waitIdle(page);
  await p.getByTestId('ci-prompt').fill('Plot revenue by region');
  await p.getByTestId('ci-ask').click();
  await expect(p.getByTestId('ci-ask-view').first()).toHaveAttribute('data-status', 'ok');
  await expect(p.getByTestId('ci-history')).toContainText('Think slowly about it');
});
