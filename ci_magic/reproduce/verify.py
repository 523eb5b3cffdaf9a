"""``ci-magic verify EXPORT.ipynb``: re-execute an export headless in a fresh sandbox and compare outputs.

The export's code was written by a model: it runs where it ran first, in a fresh sandbox (the same isolation
and limits as an ask's), cell by cell, every cell even after an error, in a folder holding copies of the data
files the export names. Code that behaves well when it finds itself sandboxed and steals when it does not gets
no second chance outside. ``--unsandboxed`` (``sandboxed=False``) runs it with nbclient in a plain kernel
instead, for a notebook the user has read and trusts. Outputs are compared as the sandbox shows them (both
sides through the same sanitiser). Then, cell by cell, the new outputs must equal the recorded ones after
normalisation:

- text (streams, ``text/plain``, ``text/html``, ``text/markdown``, JSON, error name and value) exactly, except:
  memory addresses (``0x7f…``, 6+ hex digits) → ``0x…``; IPython's per-process cell file names
  (``/tmp/ipykernel_123/456.py``) → ``<cell>``; wall-clock timestamps *with fractional seconds*
  (``2024-05-01 12:00:03.123456``, the shape of ``datetime.now()``; whole-second timestamps such as data dates
  are compared exactly) → ``<timestamp>``; durations (``1.23 s``, ``15 ms``, ``Wall time: …``) → ``<duration>``;
- images (``image/png``) by pixel size only, read from the PNG header: renderers differ in anti-aliasing
  between library versions, the size tells the same chart was drawn; other image types by presence;
- lines the sandbox itself adds (``[ci_magic] …`` notes on stderr) are left out;
- consecutive stream outputs of one name are merged, and ``execute_result``/``display_data`` are the same kind
  (the sandbox showed its last expression as a display).

Cells whose outputs were not recorded (a session export without a saved notebook) are run but not compared.
The data files listed in the environment cell are checked against their sha256 first. Package versions that
differ from the recorded ones are reported as notes, not failures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import importlib.metadata
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..core.errors import CIMagicError, UsageError
from ..core.executor import Executor
from ..core.settings import Settings
from ..engine.delivery import HashingSink
from ..engine.executors import make_executor
from ..sandbox.losses import MARK
from ..sandbox.sanitize import mime_bundle
from .environment import EXPORT_KEY, sha256_file

#: A file a cell wrote is hashed up to this size (the sandbox's own file limit is far below).
MAX_FILE_BYTES = 1 << 40

TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
_NORMALISE = [
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x…"),
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py"), "<cell>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}\.\d+(?:[+-]\d{2}:?\d{2}|Z)?"), "<timestamp>"),
    (re.compile(r"(?:Wall time|CPU times):[^\n]*"), "<duration>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|µs|us|ns|sec|seconds)\b"), "<duration>"),
    # The sandbox's own notes (sandbox/losses.py): a kernel outside it (--unsandboxed) does not write them.
    (re.compile(rf"^{re.escape(MARK)}.*\n?", re.M), ""),
]


@dataclass(frozen=True)
class Mismatch:
    cell: int  # index in the exported notebook
    kind: str  # "outputs", "stream", "text/plain", "image/png", "error", "data-file", ...
    detail: str

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell >= 0 else "data"
        return f"{where}: {self.kind}: {self.detail}"


def normalise_text(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text.rstrip()


def png_size(b64: str) -> tuple[int, int] | None:
    """(width, height) from a base64 PNG's IHDR chunk, which always follows the 8-byte signature."""
    try:
        head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
    except (binascii.Error, ValueError):
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else repr(value)


def comparable(outputs: list[Any]) -> list[tuple[Any, ...]]:
    """Outputs as normalised tuples; equal tuples mean "the same output" under the documented tolerance."""
    items: list[tuple[Any, ...]] = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = _text(out.get("text", ""))
            if items and items[-1][0] == "stream" and items[-1][1] == out.get("name"):
                items[-1] = ("stream", out.get("name"), items[-1][2] + text)
            else:
                items.append(("stream", out.get("name"), text))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            parts: list[tuple[str, Any]] = []
            for mime in sorted(data):
                if mime == "image/png":
                    parts.append((mime, png_size(_text(data[mime]))))
                elif mime.endswith("+json") and mime != "application/json":
                    # Plotly, Vega…: the chart's structure (traces, keys, lengths), not its exact numbers.
                    parts.append((mime, structure(data[mime])))
                elif mime in TEXT_MIMES or mime.startswith("text/"):
                    parts.append((mime, normalise_text(_text(data[mime]))))
                else:
                    parts.append((mime, None))
            items.append(("display", tuple(parts)))
        elif kind == "error":
            items.append(("error", out.get("ename"), normalise_text(_text(out.get("evalue", "")))))
    return [("stream", i[1], normalise_text(i[2])) if i[0] == "stream" else i for i in items]


def structure(value: Any, depth: int = 0) -> Any:
    """The shape of a JSON value: keys, types and list lengths, with the first item of a list standing for
    all of them (data arrays of a chart differ in their last digits between library versions)."""
    if depth > 32:
        return "…"
    if isinstance(value, dict):
        return tuple(sorted((str(k), structure(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", len(value), structure(value[0], depth + 1) if value else None)
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


def _describe(item: tuple[Any, ...] | None) -> str:
    text = repr(item)
    return text if len(text) <= 160 else text[:159] + "…"


def compare_cell(index: int, recorded: list[Any], fresh: list[Any]) -> list[Mismatch]:
    want, got = comparable(recorded), comparable(fresh)
    found: list[Mismatch] = []
    for k in range(max(len(want), len(got))):
        a = want[k] if k < len(want) else None
        b = got[k] if k < len(got) else None
        if a == b:
            continue
        if a is None or b is None:
            found.append(Mismatch(index, "outputs", f"recorded {_describe(a)}, got {_describe(b)}"))
        elif a[0] != b[0]:
            found.append(Mismatch(index, "outputs", f"recorded a {a[0]} output, got a {b[0]} output"))
        elif a[0] == "display":
            da, db = dict(a[1]), dict(b[1])
            for mime in sorted(set(da) | set(db)):
                if da.get(mime) != db.get(mime):
                    what = "pixel size" if mime == "image/png" else "content"
                    found.append(
                        Mismatch(
                            index, mime, f"{what}: recorded {da.get(mime)!r:.120}, got {db.get(mime)!r:.120}"
                        )
                    )
        else:
            found.append(Mismatch(index, a[0], f"recorded {_describe(a)}, got {_describe(b)}"))
    return found


def check_data_files(nb: Any, folder: Path) -> tuple[list[Mismatch], list[str]]:
    """Data-file mismatches and environment notes, from the export's environment cell."""
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    env_cell = next(
        (c for c in nb.cells if c.metadata.get(EXPORT_KEY, {}).get("kind") == "environment"), None
    )
    if env_cell is None:
        return [Mismatch(-1, "environment", "no environment cell: is this a ci_magic export?")], notes
    meta = env_cell.metadata[EXPORT_KEY]
    for name, sha in meta.get("data_files", {}).items():
        path = folder / name
        if not path.is_file():
            mismatches.append(Mismatch(-1, "data-file", f"{name} is missing"))
        elif sha256_file(path) != sha:
            mismatches.append(
                Mismatch(-1, "data-file", f"{name} differs from the recorded sha256 {sha[:16]}…")
            )
    for package, version in meta.get("environment", {}).get("packages", {}).items():
        try:
            now = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            now = "not installed"
        if now != version:
            notes.append(f"{package}: recorded {version}, this environment has {now}")
    return mismatches, notes


def verify(
    path: str | Path,
    timeout: float = 600.0,
    kernel_name: str | None = None,
    *,
    sandboxed: bool = True,
) -> tuple[list[Mismatch], list[str]]:
    """Run the export in a fresh sandbox (or, not ``sandboxed``, a plain kernel) and compare. It runs with
    copies of the data files the export names, so re-running never changes the notebook's folder (files the
    code writes are made there, then compared with the hashes recorded when the sandbox wrote them)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such notebook: {str(path)!r}.")
    if sandboxed and kernel_name:
        raise UsageError(
            "a kernel name only applies to an unsandboxed run (--unsandboxed): in the sandbox the code runs "
            "in ci_magic's own kernel."
        )
    recorded = nbformat.read(file, as_version=4)
    folder = file.resolve().parent
    mismatches, notes = check_data_files(recorded, folder)
    fresh = copy.deepcopy(recorded)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    name = kernel_name or recorded.metadata.get("kernelspec", {}).get("name") or "python3"
    with tempfile.TemporaryDirectory(prefix="ci_magic-verify-") as tmp:
        work = Path(tmp)
        for data_file in _data_files(recorded):
            source, target = folder / data_file, work / data_file
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        if sandboxed:
            with _sandbox(timeout, work, notes) as executor:
                mismatches += _install(executor, _installed(recorded))
                for cell in fresh.cells:
                    if cell.cell_type == "code":
                        cell.outputs = [nbformat.from_dict(o) for o in executor.run(cell.source).outputs]
                mismatches += _compare(recorded, fresh, lambda rel: _sandbox_sha(executor, rel), shown=True)
        else:
            from nbclient import NotebookClient

            NotebookClient(
                fresh,
                timeout=timeout,
                kernel_name=name,
                allow_errors=True,
                resources={"metadata": {"path": str(work)}},
            ).execute()
            mismatches += _compare(recorded, fresh, lambda rel: _file_sha(work / rel), shown=False)
    return mismatches, notes


def _compare(
    recorded: Any, fresh: Any, sha_of: Callable[[str], str | None], *, shown: bool
) -> list[Mismatch]:
    """Cell by cell; ``shown``: the recorded outputs as the sandbox would show them (its sanitiser)."""
    found: list[Mismatch] = []
    for index, (want, got) in enumerate(zip(recorded.cells, fresh.cells, strict=True)):
        meta = want.metadata.get(EXPORT_KEY, {})
        if want.cell_type != "code":
            continue
        if meta.get("outputs_recorded", True):
            expected = [_as_shown(o) for o in want.outputs] if shown else list(want.outputs)
            found += compare_cell(index, expected, list(got.outputs))
        found += compare_files(index, meta.get("files") or [], sha_of)
    return found


def _as_shown(output: Any) -> Any:
    if output.get("output_type") not in ("display_data", "execute_result"):
        return output
    data, _ = mime_bundle(dict(output.get("data") or {}))
    return {**output, "data": data}


@contextlib.contextmanager
def _sandbox(timeout: float, work: Path, notes: list[str]) -> Iterator[Executor]:
    """A fresh sandbox over ``work`` with the export's time limit; what isolation is missing goes to notes."""
    # The environment's network settings apply (allowed hosts, package index: to install the export's pins).
    settings = Settings.from_env()
    executor = make_executor(settings.with_overrides({"limits.timeout_s": timeout}), work)
    try:
        notes += [f"the sandbox: {w}" for w in executor.isolation_warnings()]
        yield executor
    finally:
        executor.close()


def _installed(nb: Any) -> list[dict[str, Any]]:
    env = next((c for c in nb.cells if c.metadata.get(EXPORT_KEY, {}).get("kind") == "environment"), None)
    pins = env.metadata[EXPORT_KEY].get("installed", []) if env is not None else []
    return [p for p in pins if isinstance(p, dict)]


#: Run in the fresh sandbox before the export: exactly the pinned packages, each checked against its hash.
INSTALL = """\
import subprocess as _sp, sys as _sys, tempfile as _tf
with _tf.NamedTemporaryFile("w", suffix=".txt", delete=False) as _req:
    _req.write({requirements!r})
_r = _sp.run([_sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", _req.name],
             capture_output=True, text=True)
print("pip exit", _r.returncode)
print(_r.stderr[-1500:])
"""


def _install(executor: Executor, pins: list[dict[str, Any]]) -> list[Mismatch]:
    """The packages the export's runs installed, installed again (pip: --no-deps, --require-hashes)."""
    lines = []
    for p in pins:
        name, version, sha = (str(p.get(k, "")) for k in ("name", "version", "sha256"))
        # From the notebook file: only well-formed names, versions and hashes reach pip's requirements.
        well_formed = (
            re.fullmatch(r"[A-Za-z0-9._-]{1,200}", name)
            and re.fullmatch(r"[A-Za-z0-9.+!_-]{1,100}", version)
            and re.fullmatch(r"[0-9a-f]{64}", sha)
        )
        if well_formed:
            lines.append(f"{name}=={version} --hash=sha256:{sha}")
    if not lines:
        return []
    result = executor.run(INSTALL.format(requirements="\n".join(lines) + "\n"))
    if "pip exit 0" in result.stdout():
        return []
    why = result.stdout().strip()[-600:] or result.error_value or "pip did not run"
    return [
        Mismatch(
            -1,
            "environment",
            f"the packages the export installed ({', '.join(line.split(' ')[0] for line in lines)}) could not "
            f"be installed again: allow the package index's host (CI_MAGIC_ALLOW_HOSTS) and check "
            f"CI_MAGIC_PACKAGE_INDEX. pip said: {why}",
        )
    ]


def _sandbox_sha(executor: Executor, rel: str) -> str | None:
    sink = HashingSink(None)
    try:
        executor.copy_file(rel, sink, MAX_FILE_BYTES)
    except CIMagicError:
        return None
    return sink.digest.hexdigest()


def _file_sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _data_files(nb: Any) -> list[str]:
    env_cell = next(
        (c for c in nb.cells if c.metadata.get(EXPORT_KEY, {}).get("kind") == "environment"), None
    )
    names = list(env_cell.metadata[EXPORT_KEY].get("data_files", {})) if env_cell is not None else []
    return [n for n in names if not Path(n).is_absolute() and ".." not in Path(n).parts]


def compare_files(index: int, files: list[Any], sha_of: Callable[[str], str | None]) -> list[Mismatch]:
    """Files a generated cell wrote in the sandbox: re-created by the run, with the same sha256."""
    found = []
    for f in files:
        rel = str(f.get("path", "")) if isinstance(f, dict) else ""
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            continue
        sha = sha_of(rel)
        if sha is None:
            found.append(Mismatch(index, "file", f"{rel} was not written"))
        elif sha != f.get("sha256"):
            found.append(
                Mismatch(
                    index, "file", f"{rel} differs from the recorded sha256 {str(f.get('sha256'))[:16]}…"
                )
            )
    return found
