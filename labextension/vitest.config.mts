import { defineConfig } from 'vitest/config';

// Unit tests only: ui-tests/ holds the Playwright browser tests, run with `jlpm test:browser`.
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], environment: 'node' }
});
