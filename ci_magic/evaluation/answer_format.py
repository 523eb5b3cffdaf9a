"""What an ``@name[value]`` answer format asks of each value: decimals, a closed set of words, an integer.

DABench-style formats describe their values in prose: ``@p[p_value] where "p_value" is a number between 0 and 1,
rounded to four decimal places, and "verdict" is a string that can be either "yes" or "no"``. Small models often
compute the right number and print it unrounded, or print the number where a word was asked for. Reading the
prose into rules lets the eval round what the format says to round (:func:`normalize`, no model call needed) and
send a word outside the listed ones back like an error, with the exact fix (:func:`problems`).

The reading is deliberately conservative: a rule is only attached to a name when the text says it plainly, and a
value is only changed or rejected when it clearly breaks the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A field of an answer format: @name[placeholder]. The last one may lack its "]" (some formats are cut off
#: there, e.g. "@monthly_avg[{'month_1':avg_1, ..., 'month_12':avg_12"): it still names an answer to print.
FIELD = re.compile(r"@(\w+)\[([^\]\n]*)(?:\]|$)")
#: A printed answer; the value may hold one level of brackets ("@outliers[[3, 17]]" from printing a list).
ANSWER_FIELD = re.compile(r"@(\w+)\[((?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]")
LIST_VALUE = re.compile(r"\s*[\[(]([^\[\]()]*)[\])]\s*")
QUOTED_ITEM = re.compile(r"\s*(['\"])(.*)\1\s*")
SEVERAL_NUMBERS = re.compile(r"\s*[\[(]?\s*-?\d[\d.eE+-]*(?:[\s,]+-?\d[\d.eE+-]*)+\s*[\])]?\s*")
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
}  # fmt: skip
DECIMALS = re.compile(
    r"(?:rounded\s+(?:off\s+)?to|to|with|of|keep(?:ing)?(?:\s+only)?)\s+(\d|zero|one|two|three|four|five|six)"
    r"\s+decimal(?:\s+places?|\s+points?|s)?",
    re.IGNORECASE,
)
WHOLE = re.compile(r"nearest\s+(?:whole\s+number|integer)", re.IGNORECASE)
QUOTED = re.compile(r"\"([^\"\n]{1,60})\"|(?<![A-Za-z])'([^'\n]{1,60})'(?![A-Za-z])")
CLOSED_SET = re.compile(r"\b(either|one of|can be|could be|should be|must be|exact values?)\b", re.IGNORECASE)
INTEGER = re.compile(
    r"\b(?:an|a|positive|non-negative|whole)\s+(?:positive\s+)?(?:integers?|whole numbers?)\b", re.I
)
PLAIN_NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Rule:
    """What the format says of one answer's value."""

    decimals: int | None = None
    options: tuple[str, ...] = ()
    integer: bool = False
    parts: tuple[Rule, ...] = ()  # "@best[month, year, price]": one rule per comma-separated part


def _decimals(text: str) -> int | None:
    if WHOLE.search(text):
        return 0
    found = [m.group(1).lower() for m in DECIMALS.finditer(text)]
    values = {int(v) if v.isdigit() else NUMBER_WORDS[v] for v in found}
    return values.pop() if len(values) == 1 else None


def _options(text: str, exclude: set[str]) -> tuple[str, ...]:
    if not CLOSED_SET.search(text):
        return ()
    words = [a or b for a, b in QUOTED.findall(text)]
    words = [w.strip() for w in words if w.strip() and w.strip() not in exclude]
    return tuple(dict.fromkeys(words)) if len(set(words)) >= 2 else ()


def _rule(text: str, exclude: set[str]) -> Rule:
    return Rule(
        decimals=_decimals(text),
        options=_options(text, exclude),
        integer=bool(INTEGER.search(text)) and "list" not in text.lower(),
    )


def parse(format_text: str) -> dict[str, Rule]:
    """One rule per answer name. Names whose value the prose does not describe plainly get an empty rule."""
    fields = list(dict.fromkeys(FIELD.findall(format_text)))
    names = list(dict.fromkeys(n for n, _ in fields))
    placeholders = {n: p.strip() for n, p in reversed(fields)}
    composite = {p: [t.strip() for t in p.split(",")] for p in placeholders.values() if _is_composite(p)}
    tokens = {p for p in placeholders.values() if re.fullmatch(r"[\w ]+", p)} | set(names)
    tokens |= {t for parts in composite.values() for t in parts}
    prose = FIELD.sub(" ", format_text)
    # Where each placeholder's description starts: the token (quoted or not) followed by a verb or "and".
    starts: list[tuple[int, int, str]] = []
    for token in sorted(tokens, key=len, reverse=True):
        # Quoted anywhere, bare only after "where"/"The"/"and": a bare "mean" is too often just a word of the prose.
        quoted = rf"[\"']{re.escape(token)}[\"']"
        bare = rf"(?:(?<=where )|(?<=Where )|(?<=The )|(?<=and )){re.escape(token)}\b"
        verb = r"(?=\s*,|\s+(?:is|are|should|refers|represents|and)\b)"
        for m in re.finditer(rf"(?:{quoted}|{bare}){verb}", prose):
            if not any(s <= m.start() < e for s, e, _ in starts):
                starts.append((m.start(), m.end(), token))
    starts.sort()
    described: dict[str, str] = {}
    pending: list[str] = []
    for i, (_, e, token) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(prose)
        segment = prose[e:end]
        if re.fullmatch(r"[\s,]*(and)?[\s,]*", segment):
            pending.append(token)  # '"mean" and "std" are ...': described by what follows
            continue
        for t in [*pending, token]:
            described.setdefault(t, segment)
        pending = []
    rules: dict[str, Rule] = {}
    for name in names:
        placeholder = placeholders[name]
        if placeholder in composite:
            parts = tuple(_rule(described.get(t, ""), tokens) for t in composite[placeholder])
            rules[name] = Rule(parts=parts)
            continue
        text = described.get(placeholder) or described.get(name) or ""
        if not text and not re.fullmatch(r"[\w ]+", placeholder):
            text = placeholder  # "@p_value[The p-value of the test, rounded to three decimal places]"
        rules[name] = _rule(text, tokens)
    return rules


def _is_composite(placeholder: str) -> bool:
    parts = [t.strip() for t in placeholder.split(",")]
    return len(parts) > 1 and all(re.fullmatch(r"\w+", t) for t in parts)


def problems(rules: dict[str, Rule], found: dict[str, str]) -> list[str]:
    """Values that need the model to think again (a word outside the listed ones), each with the fix.

    Too many decimals or a float where an integer is asked are not problems: :func:`normalize` fixes them exactly
    as the format says, without spending an attempt."""
    out: list[str] = []
    for name, rule in rules.items():
        value = found.get(name)
        if value is None:
            continue
        value = value.strip()
        if (rule.decimals is not None or rule.integer) and SEVERAL_NUMBERS.fullmatch(value):
            out.append(
                f"@{name} must be a single number, but the code printed several: {value[:80]!r}. Select the one "
                "value the question asks for (e.g. the statistic or p-value from the test's result) and print it "
                "with float(...)."
            )
            continue
        if not rule.options:
            continue
        if value not in rule.options:
            listed = " or ".join(f'"{o}"' for o in rule.options)
            hint = next((o for o in rule.options if o.lower() == value.lower()), None)
            fix = f' (write "{hint}" exactly)' if hint else ""
            out.append(
                f"@{name} must be exactly one of {listed}, but the code printed {value!r}{fix}. Compute the "
                "decision with an if/else on the computed number and print one of those words."
            )
    return out


def normalize(rules: dict[str, Rule], name: str, value: str) -> str:
    """The value as the format asks for it: rounded to the stated decimals; where it asks for an integer, the
    nearest one (``871.0`` → ``871``, a mean of ``2081990.36`` → ``2081990``)."""
    rule = rules.get(name)
    listed = LIST_VALUE.fullmatch(value)
    if listed:  # a printed Python list or tuple: the format wants its items, comma-separated, in the brackets
        items = (
            [QUOTED_ITEM.fullmatch(i) for i in listed.group(1).split(",")] if listed.group(1).strip() else []
        )
        if items and all(items):
            return ", ".join(m.group(2) for m in items if m)
        value = ", ".join(i.strip() for i in listed.group(1).split(",")) if items else ""
    if rule is not None and rule.parts:
        pieces = re.split(r"(\s*,\s*)", value.strip())
        values, separators = pieces[::2], pieces[1::2]
        if len(values) != len(rule.parts):
            return value
        fixed = [normalize({"part": r}, "part", v) for r, v in zip(rule.parts, values, strict=True)]
        return "".join(f + s for f, s in zip(fixed, [*separators, ""], strict=True))
    text = value.strip()
    number = PLAIN_NUMBER.fullmatch(text)
    if rule is None or number is None:
        return value
    digits = len(number.group(1) or "")
    if rule.integer and digits:
        return str(round(float(text)))
    if rule.decimals is not None and (digits > rule.decimals or "e" in text.lower()):
        rounded = round(float(text), rule.decimals)
        return str(int(rounded)) if rule.decimals == 0 else repr(rounded)
    return value


def normalize_text(rules: dict[str, Rule], text: str) -> str:
    """``text`` with every ``@name[value]`` answer normalized; everything else untouched."""
    return ANSWER_FIELD.sub(lambda m: f"@{m.group(1)}[{normalize(rules, m.group(1), m.group(2))}]", text)
