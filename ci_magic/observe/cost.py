"""Money and token accounting: a per-model price table and the ``--budget`` check the repair loop calls.

Prices are USD per 1M tokens, ``(prompt, completion)``. :data:`DEFAULT_PRICES` is an *editable default* copied
from public price lists when it was written — not authoritative, and it goes stale: override it with
``Settings.prices`` (``%config Ask.prices = {"my-model": [0.5, 1.5]}``, ``ci-magic ask --prices``,
``CI_MAGIC_PRICES``), merged over the defaults. Providers that report ``local`` (the embedded model, servers on
loopback) cost nothing per token, so they price at 0 unless the table names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import BudgetExceeded, UsageError
from ..core.results import AskSummary, Usage, estimate_prompt_tokens
from ..core.settings import check_prices, how_to_set
from ..providers import Message

#: USD per 1M (prompt, completion) tokens. An editable default, not a source of truth: check your provider.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}

Price = tuple[float, float]
PriceTable = Mapping[str, Sequence[float]]


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The defaults with ``overrides`` on top, validated (a typo in a price must not silently cost 0)."""
    return {**DEFAULT_PRICES, **check_prices(overrides or {})}


def price_for(model: str, local: bool, table: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: an exact entry, else the longest table prefix (dated snapshots such as
    ``gpt-4o-mini-2024-07-18``), else 0 for a ``local`` provider (embedded, loopback), else None (unknown)."""
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name + "-")]
    if prefixes:
        return table[max(prefixes, key=len)]
    return (0.0, 0.0) if local else None


def cost_usd(usage: Usage, price: Price | None) -> float | None:
    if price is None:
        return None
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000


def format_cost(value: float | None) -> str:
    if value is None:
        return "?"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


@dataclass(frozen=True)
class BudgetLimit:
    tokens: int | None = None
    usd: float | None = None

    def __str__(self) -> str:
        return f"{self.tokens:,} tokens" if self.tokens is not None else format_cost(self.usd)


def parse_budget(text: str) -> BudgetLimit:
    """``5000`` / ``5k`` / ``5000tok`` are tokens; ``$0.05`` / ``0.05$`` / ``0.05usd`` / ``0.05`` are dollars.

    A bare number with a decimal point means dollars, so ``--budget 0.05`` works even where a shell or IPython
    ate the ``$``."""
    raw = text.strip().lower().replace(",", "").replace("_", "")
    usd = re.fullmatch(r"\$?\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:\$|usd)?", raw)
    tokens = re.fullmatch(r"(\d+)\s*(k|m)?\s*(?:tok|tokens?)?", raw)
    if tokens and not raw.startswith("$") and "$" not in raw and "usd" not in raw:
        scale = {"k": 1_000, "m": 1_000_000}.get(tokens.group(2) or "", 1)
        value = int(tokens.group(1)) * scale
        if value <= 0:
            raise UsageError(f"--budget must be positive, got {text!r}.")
        return BudgetLimit(tokens=value)
    if usd:
        amount = float(usd.group(1))
        if amount <= 0:
            raise UsageError(f"--budget must be positive, got {text!r}.")
        return BudgetLimit(usd=amount)
    raise UsageError(f"--budget expects tokens (5000, 5k) or dollars ($0.05, 0.05usd), got {text!r}.")


class Budget:
    """The loop's budget hook: ``budget(spent, pending)``, raising :class:`BudgetExceeded`.

    Called before each model request with the messages about to be sent (``pending``) and after it with
    ``pending=None``. Before: the request is estimated as its prompt (characters / 4) plus the mean completion of
    this ask's earlier replies (nothing is known before the first), and refused if that would pass the limit.
    After: the ask stops as soon as the reported usage passed the limit, before the reply's code runs.
    """

    def __init__(
        self, limit: BudgetLimit, price: Price | None, model: str = "the model", how_to_price: str = ""
    ) -> None:
        if limit.usd is not None and price is None:
            how = how_to_price or how_to_set("prices", model=model)
            raise UsageError(
                f"--budget {limit} is in dollars, but there is no price for {model!r}. Add one with {how}."
            )
        self.limit = limit
        self.price = price
        self.model = model
        self.requests = 0

    def _measure(self, usage: Usage) -> float:
        if self.limit.tokens is not None:
            return float(usage.total_tokens)
        cost = cost_usd(usage, self.price)
        assert cost is not None  # checked in __init__
        return cost

    def _cap(self) -> float:
        return float(self.limit.tokens) if self.limit.tokens is not None else float(self.limit.usd or 0.0)

    def _spent_text(self, usage: Usage) -> str:
        text = f"{usage.total_tokens:,} tokens"
        if self.price is not None:
            text += f" ({format_cost(cost_usd(usage, self.price))})"
        return text

    def __call__(self, spent: Usage, pending: list[Message] | None) -> None:
        if pending is None:
            self.requests += 1
            if self._measure(spent) > self._cap():
                raise BudgetExceeded(
                    f"The budget of {self.limit} was used up: this ask has spent {self._spent_text(spent)} on "
                    f"{self.requests} model request(s). The last reply was not run. Raise --budget, or ask a "
                    "narrower question.",
                    str(self.limit),
                )
            return
        prompt = estimate_prompt_tokens(pending)
        completion = spent.completion_tokens // self.requests if self.requests else 0
        next_request = Usage(prompt, completion)
        if self._measure(spent + next_request) > self._cap():
            done = f"after {self.requests} request(s) " if self.requests else ""
            raise BudgetExceeded(
                f"The budget of {self.limit} would be exceeded by the next model request {done}(about "
                f"{next_request.total_tokens:,} tokens estimated, {self._spent_text(spent)} spent so far); "
                "nothing more was sent. Raise --budget, or describe fewer frames to shorten the prompt.",
                str(self.limit),
            )


def make_budget(
    text: str | None, model: str, local: bool, prices: Mapping[str, Any] | None, how_to_price: str = ""
) -> Budget | None:
    """The ``--budget`` option of every front end, for this model (None when no budget was given)."""
    if text is None or not str(text).strip():
        return None
    limit = parse_budget(str(text))
    return Budget(limit, price_for(model, local, price_table(prices)), model, how_to_price)


def history_table(
    results: Sequence[AskSummary], prices: Mapping[str, Any] | None = None, prices_hint: str = ""
) -> str:
    """The text of ``%ask_history``: one row per ask (failed and refused ones too, with what they spent),
    then the session's totals."""
    if not results:
        return "No asks yet in this session."
    table = price_table(prices)
    rows = [("#", "question", "result", "attempts", "prompt tok", "compl. tok", "cost", "seconds", "model")]
    total, total_cost, unknown = Usage(), 0.0, False
    for i, r in enumerate(results, 1):
        usage = r.usage
        cost = cost_usd(usage, price_for(r.model, r.local, table))
        total = total + usage
        unknown = unknown or cost is None
        total_cost += cost or 0.0
        question = " ".join(r.question.split())
        rows.append(
            (
                str(i),
                question if len(question) <= 40 else question[:39] + "…",
                r.outcome,
                str(r.attempts),
                f"{usage.prompt_tokens:,}" + ("~" if usage.estimated else ""),
                f"{usage.completion_tokens:,}",
                format_cost(cost),
                f"{r.seconds:.1f}",
                r.model,
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(
        f"total: {len(results)} ask(s), {total.prompt_tokens:,} prompt + {total.completion_tokens:,} completion "
        f"tokens, {format_cost(total_cost)}{' + unknown (no price for a model)' if unknown else ''}"
        f", {sum(r.seconds for r in results):.1f} s. (~ = estimated tokens"
        + (f"; prices: {prices_hint})" if prices_hint else ")")
    )
    return "\n".join(lines)
