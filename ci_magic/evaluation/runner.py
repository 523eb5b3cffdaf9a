"""``ci-magic eval``: run DABench-format questions through the same loop as ``%%ask``.

Each question (question + constraints + ``@name[value]`` answer format, one table) is asked in a fresh sandbox
with the table loaded as ``df``, in a working folder of its own that holds only that table: as for a user with
this one file, not a list of every other question's tables in each prompt (22% of a first prompt's characters on
the DABench dev set). The answer is what the working code prints; a check turns output that lacks a required
``@name[...]`` into a failed attempt with that reason, so the repair loop fixes formats, not only errors.
One question crashing or timing out is recorded and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from ..core.errors import CIMagicError, UsageError
from ..core.results import ExecutionResult
from . import answer_format
from .progress import Progress

ANSWER = answer_format.ANSWER_FIELD
#: An @label[value] whose label is not a plain name ("@871[871]", "@2.5[2.5]"), as well as right ones.
STRAY = re.compile(r"@([^\s\[\]@]+)\[([^\[\]\n]*)\]")
PLACEHOLDER = answer_format.FIELD

ANSWER_RULES = """\
This question must be answered in a fixed format. Your code must end by printing each answer on its own line as \
@name[value], using exactly the names given in the answer format, with the value computed by the code (never \
typed in by hand) and formatted as the format asks: round numbers with round(x, n) when it says "rounded to n \
decimal places"; print plain Python values (convert numpy values with float()/int()/str()); write strings \
exactly as the format lists them, without quotes. Follow the constraints exactly: the method, the parameters, \
the random seed, how to treat missing values."""


@dataclass(frozen=True)
class Question:
    id: int
    question: str
    constraints: str
    format: str
    file_name: str

    @cached_property
    def rules(self) -> dict[str, answer_format.Rule]:
        """What the answer format says of each value (read once per question, used by check, vote and output)."""
        return answer_format.parse(self.format)

    @property
    def answer_names(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in PLACEHOLDER.findall(self.format)))

    def answer_lines(self) -> str:
        """The print statements the code must end with: small models follow a template better than a rule."""
        return "\n".join(f'print(f"@{name}[{{{name}}}]")' for name in self.answer_names)

    def prompt(self) -> str:
        return (
            f"{self.question.strip()}\n\nConstraints: {self.constraints.strip()}\n\n"
            f"Answer format: {self.format.strip()}\n\n"
            f"The table is the file {self.file_name!r}, already loaded as the DataFrame `df`.\n\n"
            f"Store each answer in a variable of that name and end the code with exactly:\n{self.answer_lines()}"
        )


def read_questions(path: Path) -> list[Question]:
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the questions file {str(path)!r}: {exc.strerror}.") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(
                    int(row["id"]),
                    str(row["question"]),
                    str(row.get("constraints", "")),
                    str(row.get("format", "")),
                    str(row["file_name"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{path}:{n}: not a DABench question line ({type(exc).__name__}: {exc})."
            ) from None
    return questions


def answer_check(question: Question) -> Any:
    """A loop check: the output must carry every required @name[value], with a value that is not a placeholder
    and, where the format lists the allowed words, one of those words."""
    names = question.answer_names
    placeholders = {name: value for name, value in PLACEHOLDER.findall(question.format)}
    rules = question.rules

    def check(execution: ExecutionResult) -> str | None:
        found = dict(ANSWER.findall(execution.stdout()))
        missing = [n for n in names if n not in found]
        if missing:
            lines = "\n".join(f'print(f"@{n}[{{{n}}}]")' for n in missing)
            # "@871[871]": the f-string put the value where the name goes (braces around the name too).
            stray = [m.group(0) for m in STRAY.finditer(execution.stdout()) if m.group(1) not in names][:3]
            instead = (
                f" It printed {', '.join(stray)} instead: the name after @ is plain text, only the value is in "
                "braces."
                if stray
                else ""
            )
            return (
                f"it never printed {', '.join(f'@{n}[...]' for n in missing)}.{instead} Assign each answer to a "
                f"variable of that name and end the code with:\n{lines}"
            )
        echoed = [
            n for n in names if found[n].strip() == placeholders.get(n, "").strip() and found[n].strip()
        ]
        if echoed:
            return f"it printed the placeholder text instead of a computed value for {', '.join(echoed)}."
        # "none" is no value, unless the format lists it among the answer's words ("linear", …, or "none").
        undefined = [
            n
            for n in names
            if found[n].strip().lower() in ("nan", "none", "inf", "-inf")
            and not (n in rules and found[n].strip().lower() in (o.lower() for o in rules[n].options))
        ]
        if undefined:
            return (
                f"{', '.join(f'@{n}' for n in undefined)} printed {found[undefined[0]].strip()}, not a value. "
                "A computation met missing values (NaN) or an empty selection: drop missing values before "
                "computing (e.g. .dropna() on the columns used) and check that each filter selects rows. "
                "scipy.stats functions give nan when a sample holds NaN: drop them from each sample first."
            )
        broken = answer_format.problems(rules, found)
        if broken:
            return "the answers do not follow the answer format:\n" + "\n".join(f"- {p}" for p in broken)
        return None

    return check


def answer_key(question: Question) -> Any:
    """Samples vote on their @name[value] answers as the format asks for them (so 40.8214 and 40.82 agree when
    it says two decimals; numbers compared as numbers), never on other printed text. Only executions that
    passed :func:`answer_check` are ``ok`` and reach the vote; output missing an answer has no key."""
    rules = question.rules

    def key(execution: ExecutionResult) -> tuple[tuple[str, str], ...] | None:
        found = dict(ANSWER.findall(execution.stdout()))
        if not all(n in found for n in question.answer_names):
            return None
        return tuple(
            (n, _canonical(answer_format.normalize(rules, n, found[n]))) for n in question.answer_names
        )

    return key


def _canonical(value: str) -> str:
    value = value.strip()
    try:
        return repr(float(value))
    except ValueError:
        return value


def response_text(question: Question, execution: ExecutionResult) -> str:
    """What the code printed, with the @answers rounded as the format says (ci_magic/evaluation/answer_format.py)."""
    return answer_format.normalize_text(question.rules, execution.stdout())


def load_table(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except UnicodeDecodeError:
        return pd.read_csv(path, encoding="latin-1")


@contextlib.contextmanager
def own_folder(table: Path) -> Iterator[Path]:
    """A temporary working folder holding a copy of ``table`` only; removed with whatever the code wrote."""
    with tempfile.TemporaryDirectory(prefix="ci_magic-eval-") as folder:
        shutil.copy2(table, Path(folder) / table.name)
        yield Path(folder)


def run_eval(
    questions: list[Question],
    tables: Path,
    out: TextIO,
    *,
    settings: Any,
    attempts: int,
    fresh: bool = False,
    progress: TextIO | Progress = sys.stderr,
) -> Iterator[dict[str, Any]]:
    """Ask every question; yields (and writes to ``out``) one record per question. ``progress``: where it is
    shown (a bar on a terminal, a line per question otherwise; see evaluation/progress.py).

    ``cached_replies`` counts the model replies of a question that the reply cache replayed (``fresh``: none):
    a time per question is the model's only where it is 0."""
    from ..engine.interpreter import Interpreter
    from ..providers.resolve import make_provider

    provider = make_provider(settings)
    shown = progress if isinstance(progress, Progress) else Progress(len(questions), progress)
    try:
        for q in questions:
            t0 = time.monotonic()
            record: dict[str, Any] = {
                "id": q.id,
                "response_text": "",
                "attempts": 0,
                "samples": 0,
                "replies": 0,
                "cached_replies": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "seconds": 0.0,
                "ok": False,
            }
            try:
                frame = load_table(tables / q.file_name)
                with (
                    own_folder(tables / q.file_name) as folder,
                    Interpreter(settings, provider=provider, user_dir=folder) as interp,
                ):
                    result = interp.ask(
                        q.prompt(),
                        {"df": frame},
                        attempts=attempts,
                        keep=None,
                        system_extra=ANSWER_RULES,
                        check=answer_check(q),
                        vote_key=answer_key(q),
                        fresh=fresh,
                    )
                final = result.final
                last = final.execution if final is not None and final.execution is not None else None
                if last is None:
                    last = next((a.execution for a in reversed(result.attempts) if a.execution), None)
                usage = result.usage
                answer = response_text(q, last) if last is not None else ""
                if (
                    not result.ok and result.best_effort is not None
                ):  # the failed ask's values, in the asked form
                    answer = answer_format.normalize_text(q.rules, result.best_effort.text)
                record.update(
                    response_text=answer,
                    best_effort=result.best_effort is not None,
                    attempts=sum(not a.sample for a in result.attempts),
                    samples=1 + sum(a.sample for a in result.attempts),
                    replies=len(result.attempts),
                    cached_replies=sum(a.cached for a in result.attempts),
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    ok=result.ok,
                    answer_in_words=result.words.text if result.words is not None else None,
                    # The steps after the attempts (answer in words, a failed ask's format step): model seconds.
                    side_seconds=round(
                        sum(x.model_seconds for x in (result.words, result.best_effort) if x is not None), 2
                    ),
                    side_completion_tokens=sum(
                        x.usage.completion_tokens for x in (result.words, result.best_effort) if x is not None
                    ),
                    # How each reply ended, for the failure table of benchmarks/dabench.py.
                    attempt_log=[
                        {
                            "outcome": a.outcome,
                            "error": a.execution.error_name if a.execution is not None else None,
                            "sample": a.sample,
                            "seconds": round(
                                a.model_seconds + (a.execution.seconds if a.execution else 0.0), 2
                            ),
                            "model_seconds": round(a.model_seconds, 2),
                            "prompt_tokens": a.usage.prompt_tokens,
                            "completion_tokens": a.usage.completion_tokens,
                        }
                        for a in result.attempts
                    ],
                )
            except CIMagicError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # one broken question must not end the run
                record["error"] = f"crash: {type(exc).__name__}: {exc}"
            record["seconds"] = round(time.monotonic() - t0, 2)
            out.write(json.dumps(record) + "\n")
            out.flush()
            shown.done(q.id, record)
            yield record
    finally:
        shown.close()
        provider.close()  # the HTTP connection pool of the client
