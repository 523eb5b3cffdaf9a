import * as path from 'path';

import { defineConfig } from '@playwright/test';

const LAB_PORT = Number(process.env.CI_LAB_PORT ?? 8899);
const NB_PORT = Number(process.env.CI_NB_PORT ?? 8898);
const FAKE_PORT = Number(process.env.CI_FAKE_PORT ?? 8765);
const REPO = path.resolve(__dirname, '../..');
const PYTHON = path.join(process.env.VENV ?? path.join(REPO, '.venv'), 'bin', 'python');
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
const NOTEBOOK7_SPECS = /notebook7\.spec\.ts$/;
// SIGTERM, not Playwright's default SIGKILL: start-lab.sh's trap then stops Jupyter and removes its temp dirs.
const STOP_JUPYTER = { signal: 'SIGTERM' as const, timeout: 10_000 };

export default defineConfig({
  testDir: './tests',
  outputDir: path.join(ARTIFACTS, 'playwright'),
  timeout: 180_000,
  expect: { timeout: 60_000 },
  workers: 1, // each test starts a kernel and a sandbox kernel; two cores are enough for one at a time
  retries: 0,
  reporter: [['list']],
  use: {
    viewport: { width: 1400, height: 900 },
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking']
    }
  },
  // One server per frontend: `jupyter lab` and `jupyter notebook` (Notebook 7), as users start them.
  projects: [
    { name: 'jupyterlab', testIgnore: NOTEBOOK7_SPECS, use: { baseURL: `http://127.0.0.1:${LAB_PORT}` } },
    { name: 'notebook7', testMatch: NOTEBOOK7_SPECS, use: { baseURL: `http://127.0.0.1:${NB_PORT}` } }
  ],
  webServer: [
    {
      command: `${PYTHON} -m ci_magic.cli fake-server ${path.join(__dirname, 'fake_model.json')} --port ${FAKE_PORT}`,
      url: `http://127.0.0.1:${FAKE_PORT}/v1/models`,
      cwd: REPO,
      reuseExistingServer: false,
      timeout: 30_000
    },
    {
      command: `${path.join(__dirname, 'start-lab.sh')}`,
      url: `http://127.0.0.1:${LAB_PORT}/lab`,
      env: { CI_JUPYTER_APP: 'lab', CI_LAB_PORT: String(LAB_PORT), CI_FAKE_PORT: String(FAKE_PORT) },
      reuseExistingServer: false,
      gracefulShutdown: STOP_JUPYTER,
      timeout: 90_000
    },
    {
      command: `${path.join(__dirname, 'start-lab.sh')}`,
      url: `http://127.0.0.1:${NB_PORT}/tree`,
      env: { CI_JUPYTER_APP: 'notebook', CI_LAB_PORT: String(NB_PORT), CI_FAKE_PORT: String(FAKE_PORT) },
      reuseExistingServer: false,
      gracefulShutdown: STOP_JUPYTER,
      timeout: 90_000
    }
  ]
});
