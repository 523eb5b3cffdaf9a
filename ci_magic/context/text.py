"""Quoting shared by the context builders: every name and value from the user's data reaches the model as a
clipped Python literal (``repr``), so text inside the data (including prompt-injection attempts) stays quoted
data, never instructions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

VALUE_CHARS = 40
NAME_CHARS = 80


def quote(value: Any, limit: int = VALUE_CHARS) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        text = f"{value:.6g}"  # full float reprs waste tokens and say nothing more about the data
    elif isinstance(value, pd.Timestamp | pd.Timedelta):
        text = repr(str(value).removesuffix(" 00:00:00"))
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
