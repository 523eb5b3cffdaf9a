from __future__ import annotations

import ci_magic


def test_public_api_is_small_and_pinned() -> None:
    assert sorted(ci_magic.__all__) == [
        "AskResult",
        "Attempt",
        "CIMagicError",
        "ExecutionResult",
        "FakeModelServer",
        "Interpreter",
        "Limits",
        "Settings",
        "Usage",
        "__version__",
        "load_ipython_extension",
        "unload_ipython_extension",
    ]
    for name in ci_magic.__all__:
        assert getattr(ci_magic, name) is not None
