#!/usr/bin/env bash
# JupyterLab (or, with CI_JUPYTER_APP=notebook, Notebook 7) for the browser tests: loopback, no token, a
# throw-away root and Jupyter dirs, this checkout's built extension (found through JUPYTER_PATH, so no install
# into the venv), the fake model in the env. Port: CI_LAB_PORT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$repo/.venv}"
port="${CI_LAB_PORT:-8899}"
app="${CI_JUPYTER_APP:-lab}"
case "$app" in
  lab) app_class=LabApp ;;
  notebook) app_class=JupyterNotebookApp ;;
  *) echo "start-lab.sh: CI_JUPYTER_APP must be lab or notebook, not '$app'" >&2; exit 2 ;;
esac
work="$(mktemp -d /tmp/ci-magic-ui.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/path/labextensions" "$work/config/labconfig" "$work/data" "$work/runtime"
ln -s "$repo/ci_magic/labextension" "$work/path/labextensions/ci-magic-labextension"
# No "get news?" toast over the notebook.
echo '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}' \
  > "$work/config/labconfig/page_config.json"
export JUPYTER_PATH="$work/path" JUPYTER_CONFIG_DIR="$work/config" JUPYTER_DATA_DIR="$work/data"
export JUPYTER_RUNTIME_DIR="$work/runtime" JUPYTER_PLATFORM_DIRS=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
# Reply cache and traces in the throw-away dir too: a reply cached by an earlier run (0 tokens) must not answer.
export CI_MAGIC_CACHE_DIR="$work/cache"
export OPENAI_BASE_URL="http://127.0.0.1:${CI_FAKE_PORT:-8765}/v1" OPENAI_API_KEY=x CI_MAGIC_MODEL=fake-model
# Not exec: the EXIT trap must still remove the temp dirs when Playwright stops the server.
"$venv/bin/jupyter" "$app" --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port="$port" \
  --ServerApp.port_retries=0 --ServerApp.allow_root=True --IdentityProvider.token= \
  --ServerApp.password= --ServerApp.disable_check_xsrf=True --ServerApp.root_dir="$work/root" \
  --"$app_class".expose_app_in_browser=True --ServerApp.open_browser=False &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT INT TERM
wait $pid
