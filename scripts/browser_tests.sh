#!/usr/bin/env bash
# Build the JupyterLab extension (labextension/) and run its unit and browser tests.
#   scripts/browser_tests.sh            needs ./.venv with ci_magic, jupyterlab and notebook 7 (./dev test makes it)
# Browser tests drive Debian's chromium (never a downloaded browser) against a JupyterLab and a Notebook 7 on
# loopback and the scripted fake model; screenshots go to test-artifacts/.
# Ports: CI_LAB_PORT (8899, JupyterLab), CI_NB_PORT (8898, Notebook 7), CI_FAKE_PORT (8765, fake model).
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV="${VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/jupyter" ] || [ ! -x "$VENV/bin/jlpm" ]; then
  echo "browser_tests: $VENV has no jupyterlab; run ./dev test (or pip install -e '.[dev]') first" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/jupyter-notebook" ]; then
  echo "browser_tests: $VENV has no Notebook 7 (the notebook7 tests need it): pip install 'notebook>=7.4,<8'" >&2
  exit 2
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "browser_tests: needs chromium: sudo apt-get install -y chromium chromium-driver" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
export PATH="$VENV/bin:$PATH" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
mkdir -p test-artifacts
cd labextension
CI=true jlpm install --immutable  # the committed yarn.lock, exactly
jlpm build
jlpm test
jlpm test:browser
