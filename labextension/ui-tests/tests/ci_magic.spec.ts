import { execFile } from 'child_process';
import * as path from 'path';
import { promisify } from 'util';

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
  start,
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
  await expect(p.getByTestId('ci-context')).toContainText("sales: pandas DataFrame, 4 rows × 2 columns");

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
  // The answer in words: model text shown as text (its markup is not run).
  await expect(view.getByTestId('ci-answer')).toContainText('Revenue is highest in the north (40.0).');
  await expect(view.getByTestId('ci-answer')).toContainText('<img src=x');
  expect(await page.evaluate(() => (window as any).pwned)).toBeUndefined();
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
  await expect(cells(page).nth(3)).toContainText('Answer: <img src=x');
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

test('script in model-written outputs does not run, inserted or shown as the magic output', async ({ page }) => {
  // Cell by cell: the answer is inserted as cells. Then the same ask in one "Run All" batch with %load_ext:
  // the magic shows the outputs itself (the fallback). Neither path may run the code's script in the page.
  await openNotebook(page, 'hostile.ipynb', [SETUP, '%%ask\nShow the hostile output']);
  await runCell(page, 0);
  await runCell(page, 1);
  await expect(cells(page)).toHaveCount(4);
  const inserted = cells(page).nth(2);
  await expect(inserted.locator('.ci-safe-part')).toHaveText('safe part');
  await expect(inserted).toContainText('hostile outputs sent');
  await page.waitForTimeout(1500); // an onerror handler would have fired by now
  expect(await page.evaluate(() => (window as any).pwned)).toBeUndefined();

  await openNotebook(page, 'hostile-fallback.ipynb', [`${SETUP}\nget_ipython().run_cell_magic('ask', '', 'Show the hostile output')`]);
  await runAll(page);
  await expect(cells(page).first().locator('.ci-safe-part')).toHaveText('safe part');
  await page.waitForTimeout(1500);
  expect(await page.evaluate(() => (window as any).pwned)).toBeUndefined();
  await page.screenshot({ path: artifact('hostile-outputs.png'), fullPage: true });
});

test('text from the sandbox never makes the browser fetch: record cell, markdown and SVG outputs', async ({
  page
}) => {
  // The sandbox has no network, so a URL the browser fetches is the way data would leave: a failed attempt's
  // error in the record cell, a markdown reference-style image, an SVG image with an entity-encoded URL.
  const beacons: string[] = [];
  page.on('request', request => {
    if (request.url().startsWith('http://127.0.0.1:9/')) {
      beacons.push(request.url());
    }
  });
  await openNotebook(page, 'beacons.ipynb', [SETUP, '%%ask --attempts 2\nShow the beacons in the record']);
  await runCell(page, 0);
  await runCell(page, 1);
  await expect(cells(page)).toHaveCount(4);
  const code = cells(page).nth(2);
  await expect(code).toContainText('beacons sent');
  // (An inserted cell is not trusted: JupyterLab itself shows its SVG as text. The markdown is shown as HTML.)
  await expect(code.locator('.jp-RenderedHTMLCommon', { hasText: 'see' }).first()).toBeVisible();
  const record = cells(page).nth(3);
  await expect(record).toContainText('Attempt 1');
  await record.locator('summary').first().click(); // open the failed attempt: its error is shown as text
  await expect(record).toContainText('record-beacon.png');
  await page.waitForTimeout(2000); // an image would have been requested by now
  expect(beacons).toEqual([]);
  expect(await page.evaluate(() => (window as any).pwned)).toBeUndefined();
  await page.screenshot({ path: artifact('beacons.png'), fullPage: true });
});

test('files the code writes land beside the notebook: linked in the cell, opened, listed in the panel', async ({
  page
}) => {
  // A notebook in a subfolder: the kernel runs there, so the files arrive there and every path includes it.
  const dir = await page.request.put('/api/contents/reports', { data: { type: 'directory' } });
  expect(dir.ok()).toBeTruthy();
  await openNotebook(page, 'reports/files-ask.ipynb', [SETUP, '%%ask\nSave the revenue totals as files']);
  await runCell(page, 0);
  await runCell(page, 1);
  await expect(cells(page)).toHaveCount(4);
  const code = cells(page).nth(2);
  await expect(code.locator('.jp-InputArea')).toContainText("plt.savefig('revenue chart.png')");
  const listing = code.locator('.jp-OutputArea-output', { hasText: 'Files the code wrote' });
  const csvLink = listing.getByRole('link', { name: 'summary.csv' });
  await expect(csvLink).toBeVisible();
  await expect(listing.getByRole('link', { name: 'revenue chart.png' })).toBeVisible();
  // The chart is shown inline from the saved file (the code closed its figure, so no other image is shown).
  const images = code.locator('.jp-OutputArea-output img');
  await expect(images).toHaveCount(1);
  await expect(images).toBeVisible();
  expect(await images.evaluate(img => (img as HTMLImageElement).naturalWidth)).toBeGreaterThan(100);
  await waitIdle(page);
  await code.scrollIntoViewIfNeeded();
  await page.screenshot({ path: artifact('files-cell.png'), fullPage: true });

  // The files are in the notebook's folder on the server.
  const saved = await page.request.get('/api/contents/reports?content=1');
  const names = ((await saved.json()).content as { name: string }[]).map(f => f.name);
  expect(names).toEqual(expect.arrayContaining(['summary.csv', 'revenue chart.png']));

  // Clicking the CSV's link opens it in JupyterLab, as a document of its own.
  await csvLink.click();
  const tab = (name: string) => page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: name });
  await expect(tab('summary.csv')).toBeVisible();
  await expect.poll(() => page.evaluate(() => window.jupyterapp.shell.currentWidget?.title.label)).toBe(
    'summary.csv'
  );
  await expect(page.locator('.jp-CSVViewer')).toBeVisible(); // a grid drawn on a canvas: no text to read
  await page.screenshot({ path: artifact('files-csv-opened.png') });

  // The panel lists the same ask's files with Open and Download.
  await tab('files-ask.ipynb').click();
  await command(page, 'ci-magic:open-panel');
  const p = panel(page);
  const view = p.getByTestId('ci-ask-view').first();
  await expect(view).toHaveAttribute('data-status', 'ok');
  const files = view.getByTestId('ci-file');
  await expect(files).toHaveCount(2);
  await expect(files.getByTestId('ci-file-name')).toHaveText(['revenue chart.png', 'summary.csv']);
  const chart = files.filter({ hasText: 'revenue chart.png' });
  const download = chart.getByTestId('ci-file-download');
  await expect(download).toHaveAttribute('href', /\/files\/reports\/revenue%20chart\.png$/);
  await expect(download).toHaveAttribute('download', 'revenue chart.png');
  await expect(files.filter({ hasText: 'summary.csv' }).getByTestId('ci-file-download')).toHaveAttribute(
    'href',
    /\/files\/reports\/summary\.csv$/
  );
  const body = await page.request.get((await download.getAttribute('href'))!);
  expect(body.ok()).toBeTruthy();
  expect((await body.body()).subarray(1, 4).toString()).toBe('PNG');
  await view.getByTestId('ci-files').scrollIntoViewIfNeeded();
  await p.screenshot({ path: artifact('files-panel.png') });

  await chart.getByTestId('ci-file-open').click();
  await expect(tab('revenue chart.png')).toBeVisible();
  await expect(page.locator('.jp-ImageViewer img')).toBeVisible();
  await page.screenshot({ path: artifact('files-panel-opened.png'), fullPage: true });
});

test('a running %%ask shows printed lines and a tqdm bar as they come, in the cell and the panel', async ({
  page
}) => {
  await openNotebook(page, 'live.ipynb', [SETUP, '%%ask\nCount to six with a pause']);
  await runCell(page, 0);
  await command(page, 'ci-magic:open-panel');
  const cell = cells(page).nth(1);
  await cell.locator('.jp-InputPrompt').click();
  await start(page, 'notebook:run-cell'); // not waited for: the test watches it run
  await expect(cell).toContainText('running in the sandbox', { timeout: 60_000 });
  // The code prints its first line at once: it shows within two seconds, in the cell and in the panel.
  await expect(cell.locator('.jp-OutputArea')).toContainText('tick 0', { timeout: 2_000 });
  const attempt = panel(page).getByTestId('ci-ask-view').first().getByTestId('ci-attempt').last();
  await expect(attempt).toContainText('tick 0', { timeout: 2_000 });
  await expect(cell.locator('.jp-OutputArea')).not.toContainText('tick 5');
  await page.screenshot({ path: artifact('live-output.png'), fullPage: true });
  await expect(cell.locator('.jp-OutputArea')).toContainText('tick 5', { timeout: 10_000 });
  // The tqdm bar redraws in place: several different counts are seen while it runs.
  const seen = new Set<string>();
  await expect
    .poll(
      async () => {
        const text = await cell.locator('.jp-OutputArea').innerText();
        const count = /bar:.*?(\d)\/8/.exec(text);
        if (count) {
          seen.add(count[1]);
        }
        return seen.size;
      },
      { timeout: 10_000, intervals: [200] }
    )
    .toBeGreaterThanOrEqual(3);
  await page.screenshot({ path: artifact('live-output-tqdm.png'), fullPage: true });
  await waitIdle(page);
  // The working run's outputs arrive with its cell; the live area of the %%ask cell is emptied.
  await expect(cells(page).nth(2).locator('.jp-OutputArea')).toContainText('tick 5');
  await expect(cells(page).nth(2).locator('.jp-OutputArea')).toContainText('all done');
  await expect(cell.locator('.jp-OutputArea')).not.toContainText('tick 0');
});

test('interrupting a %%ask while its code runs stops it within two seconds', async ({ page }) => {
  await openNotebook(page, 'live-cancel.ipynb', [SETUP, '%%ask\nCount until stopped', 'print("still usable")']);
  await runCell(page, 0);
  const cell = cells(page).nth(1);
  await cell.locator('.jp-InputPrompt').click();
  await start(page, 'notebook:run-cell');
  await expect(cell.locator('.jp-OutputArea')).toContainText('beat 2', { timeout: 60_000 });
  const asked = Date.now();
  await command(page, 'kernelmenu:interrupt');
  await waitIdle(page);
  expect(Date.now() - asked).toBeLessThan(2_000);
  await expect(cell.locator('.jp-OutputArea')).toContainText('cancelled');
  await runCell(page, 2);
  await expect(cells(page).nth(2).locator('.jp-OutputArea')).toContainText('still usable');
});

/** One MCP tool call by an agent outside the browser (ui-tests/mcp_call.py, the SDK's own client). */
async function agentCall(url: string, token: string, tool: string, args: object): Promise<string> {
  const venv = process.env.VENV ?? path.resolve(__dirname, '../../../.venv');
  const script = path.resolve(__dirname, '../mcp_call.py');
  const { stdout } = await promisify(execFile)(path.join(venv, 'bin', 'python'), [
    script,
    url,
    token,
    tool,
    JSON.stringify(args)
  ]);
  return stdout;
}

test("an MCP agent's run_python reads the live notebook's frame, and its cells appear below %ask_serve", async ({
  page
}) => {
  await openNotebook(page, 'serve.ipynb', [
    `${SETUP}\nsales.loc[0, 'revenue'] = 1234.5`,
    '%ask_serve',
    "print('the user cell after')",
    '%ask_serve stop'
  ]);
  await runCell(page, 0);
  await runCell(page, 1);
  const served = await cells(page).nth(1).locator('.jp-OutputArea').innerText();
  const url = /at (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(served)?.[1];
  const token = /token: (\S+)/.exec(served)?.[1];
  expect(url && token).toBeTruthy();
  // The frame the agent's code reads is the notebook's own (1234.5 was set in the notebook only).
  const first = await agentCall(url!, token!, 'run_python', { code: "print('total', sales.revenue.sum())" });
  expect(first).toContain('total 1289.5');
  const agentCell = cells(page).nth(2);
  await expect(agentCell).toContainText('run by the agent browser-test-agent (MCP run_python');
  await expect(agentCell.locator('.jp-OutputArea')).toContainText('total 1289.5');
  // A second call goes after the first, above the user's next cell: the calls keep their order.
  await agentCall(url!, token!, 'run_python', { code: "print('second call')" });
  await expect(cells(page).nth(3).locator('.jp-OutputArea')).toContainText('second call');
  await expect(cells(page).nth(4)).toContainText('the user cell after');
  await page.screenshot({ path: artifact('ask-serve.png'), fullPage: true });
  // Stopping ends access.
  await runCell(page, 5);
  await expect(cells(page).nth(5).locator('.jp-OutputArea')).toContainText('no longer reach this notebook');
  await expect(agentCall(url!, token!, 'describe_data', {})).rejects.toThrow();
});
