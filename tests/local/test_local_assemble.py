"""Assembling a GGUF from part packages, on small synthetic parts that live in a temp sys.path entry."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_magic.core.errors import ProviderConfigError, UsageError
from ci_magic.local import assemble as asm
from ci_magic.local.models import DEFAULT_MODEL, GGUF_ENV, MODELS, ModelSpec, resolve

_counter = itertools.count()
PARTS = [os.urandom(3000 + 1000 * i) for i in range(3)]

MakeSpec = Callable[..., tuple[ModelSpec, Path]]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(asm.CACHE_ENV, str(cache))
    return cache


@pytest.fixture
def make_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeSpec:
    """Installs fake part packages (unique module names: importlib caches lookups) and a spec for them."""

    def make(parts: list[bytes] = PARTS, *, skip: int | None = None) -> tuple[ModelSpec, Path]:
        prefix = f"cimagic_fake{next(_counter)}_part"
        site = tmp_path / f"site{prefix}"
        for index, blob in enumerate(parts, start=1):
            if index == skip:
                continue
            data = site / f"{prefix}{index}" / "data"
            data.mkdir(parents=True)
            (data.parent / "__init__.py").write_text(
                "raise RuntimeError('part packages must not be imported')\n"
            )
            (data / f"part{index:02d}.bin").write_bytes(blob)
        monkeypatch.syspath_prepend(str(site))
        whole = b"".join(parts)
        spec = ModelSpec(
            name=f"fake-{prefix}",
            package_prefix=prefix.replace("_", "-"),
            module_prefix=prefix,
            version="0.0.1",
            parts=len(parts),
            size=len(whole),
            sha256=hashlib.sha256(whole).hexdigest(),
            filename=f"{prefix}.gguf",
            extra="local-test",
        )
        return spec, site

    return make


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").glob(".*.tmp"))


def test_assembles_in_order_and_records_verification(make_spec: MakeSpec, cache_dir: Path) -> None:
    spec, _ = make_spec()
    out = io.StringIO()
    path = asm.assemble(spec, stream=out)
    assert path == cache_dir / "models" / spec.filename
    assert path.read_bytes() == b"".join(PARTS)
    assert asm.is_verified(path, spec)
    assert _leftovers(cache_dir) == []
    lines = out.getvalue().splitlines()  # not a TTY: a handful of lines, not a redraw per chunk
    assert 2 <= len(lines) <= 6 and "done" in lines[-1]


def test_cached_file_is_reused_without_rehash(make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = make_spec()
    first = asm.assemble(spec, stream=io.StringIO())

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a verified cached file must not be hashed or rebuilt")

    monkeypatch.setattr(asm, "_hash_file", boom)
    monkeypatch.setattr(asm, "_concatenate", boom)
    monkeypatch.setattr(asm, "find_parts", boom)
    assert asm.assemble(spec, stream=io.StringIO()) == first


def test_corrupt_part_is_a_hash_error_and_leaves_nothing(make_spec: MakeSpec, cache_dir: Path) -> None:
    spec, site = make_spec()
    part = site / spec.module(2) / "data" / "part02.bin"
    blob = bytearray(part.read_bytes())
    blob[10] ^= 0xFF
    part.write_bytes(bytes(blob))
    with pytest.raises(asm.ModelCorrupt, match="sha256") as err:
        asm.assemble(spec, stream=io.StringIO())
    assert isinstance(err.value, ProviderConfigError)
    assert "--force-reinstall" in str(err.value)
    assert not (cache_dir / "models" / spec.filename).exists()
    assert _leftovers(cache_dir) == []


def test_oversized_parts_stop_early(make_spec: MakeSpec, cache_dir: Path) -> None:
    spec, site = make_spec()
    part = site / spec.module(3) / "data" / "part03.bin"
    part.write_bytes(part.read_bytes() + b"extra")
    with pytest.raises(asm.ModelCorrupt, match="bytes"):
        asm.assemble(spec, stream=io.StringIO())
    assert not (cache_dir / "models" / spec.filename).exists()
    assert _leftovers(cache_dir) == []


def test_truncated_cached_file_is_rebuilt(make_spec: MakeSpec) -> None:
    spec, _ = make_spec()
    path = asm.assemble(spec, stream=io.StringIO())
    with path.open("r+b") as fh:
        fh.truncate(spec.size // 2)  # as after a crash or a full disk
    assert not asm.is_verified(path, spec)
    assert asm.assemble(spec, stream=io.StringIO()) == path
    assert path.read_bytes() == b"".join(PARTS)
    assert asm.is_verified(path, spec)


def test_same_size_but_altered_cached_file_is_rebuilt(make_spec: MakeSpec) -> None:
    spec, _ = make_spec()
    path = asm.assemble(spec, stream=io.StringIO())
    path.write_bytes(b"\0" * spec.size)  # sidecar now disagrees on mtime, and the hash is wrong
    assert asm.assemble(spec, stream=io.StringIO()) == path
    assert path.read_bytes() == b"".join(PARTS)


def test_good_file_without_sidecar_is_verified_not_rebuilt(
    make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = make_spec()
    path = asm.assemble(spec, stream=io.StringIO())
    path.with_name(path.name + ".verified").unlink()

    def no_rebuild(spec: ModelSpec) -> list[Path]:
        raise AssertionError("a correct file only needs hashing")

    monkeypatch.setattr(asm, "find_parts", no_rebuild)
    assert asm.assemble(spec, stream=io.StringIO()) == path
    assert asm.is_verified(path, spec)


def test_missing_part_package_names_it_and_the_extra(make_spec: MakeSpec, cache_dir: Path) -> None:
    spec, _ = make_spec(skip=2)
    with pytest.raises(asm.ModelPartsMissing) as err:
        asm.assemble(spec, stream=io.StringIO())
    message = str(err.value)
    assert isinstance(err.value, ProviderConfigError)
    assert spec.package(2) in message and spec.package(1) not in message
    assert 'pip install "ci-magic[local-test]"' in message
    assert not (cache_dir / "models" / spec.filename).exists()


def test_concurrent_assemblers_build_once(make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = make_spec()
    builds: list[int] = []
    real = asm._concatenate

    def counting(*args: object, **kwargs: object) -> None:
        builds.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asm, "_concatenate", counting)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(asm.assemble(spec, stream=io.StringIO())))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert builds == [1]


def test_real_catalogue_parts_are_complete_when_installed() -> None:
    spec = MODELS["qwen2.5-coder-0.5b"]
    try:
        parts = asm.find_parts(spec)
    except asm.ModelPartsMissing:
        pytest.skip('the 0.5B part packages are not installed (pip install "ci-magic[local-small]")')
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, spec.parts + 1)]
    assert sum(p.stat().st_size for p in parts) == spec.size


def test_resolve_default_override_and_unknown(tmp_path: Path) -> None:
    assert resolve(None, environ={}).model_id == DEFAULT_MODEL
    assert resolve("qwen2.5-coder-0.5b", environ={}).spec is MODELS["qwen2.5-coder-0.5b"]
    gguf = tmp_path / "My Model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    choice = resolve(None, environ={GGUF_ENV: str(gguf)})
    assert (choice.model_id, choice.gguf, choice.spec) == ("My-Model.Q4", gguf.resolve(), None)
    assert resolve("My-Model.Q4", environ={GGUF_ENV: str(gguf)}).gguf == gguf.resolve()
    assert resolve("qwen2.5-coder-1.5b", environ={GGUF_ENV: str(gguf)}).spec is MODELS[DEFAULT_MODEL]
    with pytest.raises(UsageError, match="unknown local model"):
        resolve("gpt-5", environ={})
    with pytest.raises(ProviderConfigError, match="not a file"):
        resolve(None, environ={GGUF_ENV: str(tmp_path / "missing.gguf")})


def test_missing_llama_runtime_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ci_magic.local import server

    monkeypatch.setattr(server, "RUNTIME_MODULES", ("cimagic_no_such_module",))
    with pytest.raises(ProviderConfigError, match=r"llama-cpp-python\[server\]"):
        server.ensure_server("nothing", tmp_path / "x.gguf")
