"""The first cell of an export: the Python and package versions and the data files (with their sha256) its
outputs came from, and the imports ci_magic's sandbox preloads."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..sandbox.startup import PRELOADS

EXPORT_KEY = "ci_magic_export"
PACKAGES = (
    "pandas",
    "numpy",
    "matplotlib",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "statsmodels",
    "seaborn",
    "polars",
)
_LITERAL = re.compile(r"""(?:'([^'\n\\]{1,300})'|"([^"\n\\]{1,300})")""")


def environment() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # optional packages are recorded only when present
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_files(sources: list[str], folder: Path, written: set[str] | None = None) -> dict[str, str]:
    """Files named by a string literal in ``sources`` that exist in ``folder`` (or below), with their sha256;
    not the ones the exported code itself writes (``written``)."""
    root = folder.resolve()
    found: dict[str, str] = {}
    for source in sources:
        for match in _LITERAL.finditer(source):
            name = match.group(1) or match.group(2)
            try:
                path = (root / name).resolve()
                if not path.is_file() or not path.is_relative_to(root) or path.suffix == ".ipynb":
                    continue
            except (OSError, ValueError):
                continue
            relative = path.relative_to(root).as_posix()
            if relative not in (written or set()):
                found[relative] = sha256_file(path)
    return dict(sorted(found.items()))


def environment_cell(
    env: dict[str, Any], files: dict[str, str], installed: list[dict[str, Any]] | None = None
) -> NotebookNode:
    """``installed``: packages the sandbox installed at run time (name, version, sha256), once each; verify
    installs exactly those before it re-runs."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pins = list({(p["name"], p["version"]): p for p in installed or []}.values())
    listed = {p["name"]: p["version"] for p in pins}
    packages = (
        f"""
# Installed in ci_magic's sandbox while it ran (pinned, with their sha256 in this cell's metadata):
RECORDED_INSTALLED = {listed!r}
import importlib.metadata as _metadata

for _name, _version in RECORDED_INSTALLED.items():
    try:
        _found = _metadata.version(_name)
    except _metadata.PackageNotFoundError:
        _found = None
    if _found != _version:
        print(f"warning: these outputs used {{_name}}=={{_version}}; install it (pip install {{_name}}=={{_version}})")
"""
        if pins
        else ""
    )
    source = f"""\
# Exported by ci_magic on {stamp}: a plain notebook, re-runnable without ci_magic or a model.
# The outputs below were produced with this environment and these data files (sha256).
RECORDED_ENVIRONMENT = {env!r}
RECORDED_DATA_FILES = {files!r}

import hashlib as _hashlib
import pathlib as _pathlib

for _name, _sha in RECORDED_DATA_FILES.items():
    _path = _pathlib.Path(_name)
    if not _path.is_file() or _hashlib.sha256(_path.read_bytes()).hexdigest() != _sha:
        print(f"warning: {{_name}} is missing or differs from the file these outputs came from")
{packages}
# ci_magic's sandbox preloads these; the generated code below may use them without importing.
{PRELOADS.rstrip()}"""
    cell: NotebookNode = nbformat.v4.new_code_cell(source)
    cell.metadata[EXPORT_KEY] = {"kind": "environment", "environment": env, "data_files": files}
    if pins:
        cell.metadata[EXPORT_KEY]["installed"] = pins
    return cell
