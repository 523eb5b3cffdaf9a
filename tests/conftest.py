"""Shared fixtures: the scripted fake model on loopback, real sandbox kernels, real IPython shells."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ci_magic.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer
from ci_magic.settings import Limits, Settings

ROOT = Path(__file__).resolve().parent.parent


def fenced(code: str, prose: str = "Here is the code:") -> str:
    return f"{prose}\n```python\n{code.strip()}\n```"


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def settings(fake: FakeModelServer) -> Settings:
    return Settings(
        model="fake-model", base_url=fake.base_url, api_key="test-key", limits=Limits(timeout_s=10)
    )


@pytest.fixture
def interpreter(settings: Settings, tmp_path: Path) -> Iterator[Interpreter]:
    with Interpreter(settings, user_dir=tmp_path) as it:
        yield it


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.read_csv(ROOT / "notebooks" / "sales.csv", parse_dates=["date"])
