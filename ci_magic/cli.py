"""``ci-magic``: the same loop from a shell. Exit codes: 0 success, 1 attempts exhausted, 2 usage error."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core.errors import CIMagicError, ProviderConfigError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; we only want our wording
        self.print_usage(sys.stderr)
        print(f"ci-magic: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ci-magic", description="A self-hosted Code Interpreter for your data.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ask = sub.add_parser("ask", help="Answer a question about CSV/Parquet files with generated code.")
    ask.add_argument("question")
    ask.add_argument(
        "--data",
        "-d",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Load a table as DataFrame NAME (CSV, TSV, Parquet, JSON, Excel). Repeatable.",
    )
    ask.add_argument("--model", "-m", help="Model name (default: CI_MAGIC_MODEL or the server's).")
    ask.add_argument("--base-url", help="OpenAI-compatible base URL (default: OPENAI_BASE_URL).")
    ask.add_argument("--attempts", "-n", type=int, default=3)
    ask.add_argument("--samples", "-s", type=int, default=1, help="Independent answers to vote among.")
    ask.add_argument("--timeout", type=float, default=60.0, help="Seconds one execution may run.")
    ask.add_argument("--json", action="store_true", help="Print the whole result as JSON.")
    ask.add_argument("--save-images", metavar="DIR", help="Write image outputs as PNG files into DIR.")
    ask.add_argument("--quiet", "-q", action="store_true", help="Do not stream the model's text to stderr.")
    ask.add_argument("--budget", help="Stop at this many tokens (5000) or dollars ($0.05, 0.05usd).")
    ask.set_defaults(func=cmd_ask)

    export = sub.add_parser(
        "export", help="A notebook built with %%ask → a plain notebook that re-runs anywhere."
    )
    export.add_argument("notebook")
    export.add_argument("-o", "--out", required=True, help="The .ipynb to write.")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser("verify", help="Re-execute an export in a fresh kernel and compare its outputs.")
    verify.add_argument("notebook")
    verify.add_argument("--timeout", type=float, default=600.0, help="Seconds one cell may run.")
    verify.add_argument("--kernel", default=None, help="Kernel name (default: the notebook's).")
    verify.set_defaults(func=cmd_verify)

    ev = sub.add_parser(
        "eval", help="Run DABench-format questions through the %%ask loop; write predictions."
    )
    ev.add_argument("questions", help="JSONL: id, question, constraints, format, file_name")
    ev.add_argument("--tables", required=True, help="Folder holding the questions' tables.")
    ev.add_argument("--out", required=True, help="Predictions JSONL to write.")
    ev.add_argument("--limit", type=int, default=None, help="Only the first N questions.")
    ev.add_argument("--attempts", "-n", type=int, default=3)
    ev.add_argument(
        "--samples",
        "-s",
        type=int,
        default=1,
        help="Independent answers per question; the @answers most of them agree on are kept.",
    )
    ev.add_argument("--model", "-m")
    ev.add_argument("--base-url")
    ev.add_argument("--timeout", type=float, default=60.0, help="Seconds one execution may run.")
    ev.set_defaults(func=cmd_eval)

    fake = sub.add_parser("fake-server", help="Run the scripted fake model server (for demos and tests).")
    fake.add_argument("spec", help='JSON file: {"script": [...], "rules": [[regex, reply], ...]}')
    fake.add_argument("--port", type=int, default=0)
    fake.set_defaults(func=cmd_fake_server)

    try:
        from .local import cli as local_cli
    except ImportError:
        pass
    else:
        local_cli.register(sub)
    return parser


def load_table(spec: str) -> tuple[str, Any]:
    import pandas as pd

    name, sep, path = spec.partition("=")
    if not sep or not name.isidentifier() or not path:
        raise UsageError(f"--data expects NAME=PATH with NAME a Python identifier, got {spec!r}.")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--data {name}: no such file {path!r}.")
    suffix = file.suffix.lower()
    readers: dict[str, Any] = {
        ".csv": pd.read_csv,
        ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".parquet": pd.read_parquet,
        ".json": pd.read_json,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".xlsx": pd.read_excel,
        ".xls": pd.read_excel,
    }
    reader = readers.get(suffix, pd.read_csv)
    try:
        return name, reader(file)
    except Exception as exc:
        raise UsageError(
            f"--data {name}: could not read {path!r} as a table ({type(exc).__name__}: {exc})."
        ) from None


def cmd_ask(args: argparse.Namespace) -> int:
    from .core.events import Event
    from .core.interpreter import Interpreter
    from .core.settings import Limits, Settings

    frames = dict(load_table(spec) for spec in args.data)
    settings = Settings.from_env(
        model=args.model,
        base_url=args.base_url,
        attempts=args.attempts,
        samples=args.samples,
        limits=Limits(timeout_s=args.timeout),
    )

    def progress(event: Event) -> None:
        if args.quiet or args.json:
            return
        if event.kind == "model_start":
            print(f"\n── attempt {event.attempt}: {settings.model or 'model'} is writing…", file=sys.stderr)
        elif event.kind == "token":
            print(event.data["text"], end="", file=sys.stderr, flush=True)
        elif event.kind == "exec_done" and event.data["error"]:
            print(f"\n── attempt {event.attempt} failed: {event.data['error'][:300]}", file=sys.stderr)

    with Interpreter(settings, user_dir=Path.cwd()) as interpreter:
        budget = None
        if args.budget:
            from .observe.cost import make_budget

            provider = interpreter.provider
            budget = make_budget(args.budget, provider.model, provider.endpoint, None)
        result = interpreter.ask(args.question, frames, keep=None, on_event=progress, budget=budget)
    images = _save_images(result.outputs, args.save_images)
    if args.json:
        doc = result.to_json()
        doc["saved_images"] = images
        print(json.dumps(doc, indent=2, default=str))
    else:
        print("\n" + "=" * 20 + " code " + "=" * 20)
        print((result.code or "(no code)").rstrip())
        print("=" * 20 + " output " + "=" * 18)
        final = result.final
        text = final.execution.text() if final is not None and final.execution is not None else ""
        print(text.rstrip() or "(no output)")
        for path in images:
            print(f"[image saved to {path}]")
        usage = result.usage
        verdict = "succeeded" if result.ok else "failed"
        print("=" * 46)
        print(
            f"{verdict} after {len(result.attempts)} attempt(s) · {usage.prompt_tokens:,} prompt + "
            f"{usage.completion_tokens:,} completion tokens · {result.seconds:.1f} s · {result.model} @ "
            f"{result.endpoint}"
        )
    return EXIT_OK if result.ok else EXIT_FAILED


def _save_images(outputs: list[dict[str, Any]], directory: str | None) -> list[str]:
    if not directory:
        return []
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    saved = []
    for i, out in enumerate(outputs):
        data = out.get("data", {})
        if "image/png" in data:
            path = target / f"output-{i}.png"
            path.write_bytes(base64.b64decode(data["image/png"]))
            saved.append(str(path))
    return saved


def cmd_eval(args: argparse.Namespace) -> int:
    from .core.settings import Limits, Settings
    from .evaluation.runner import read_questions, run_eval

    questions = read_questions(Path(args.questions))[: args.limit]
    tables = Path(args.tables)
    if not tables.is_dir():
        raise UsageError(f"--tables {args.tables!r} is not a folder.")
    settings = Settings.from_env(
        model=args.model,
        base_url=args.base_url,
        attempts=args.attempts,
        samples=args.samples,
        limits=Limits(timeout_s=args.timeout),
    )
    solved = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for record in run_eval(questions, tables, out, settings=settings, attempts=args.attempts):
            solved += bool(record["ok"])
    print(f"{solved}/{len(questions)} questions produced a well-formed answer; predictions in {args.out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .reproduce.export import export_file

    exported = export_file(args.notebook, args.out)
    print(f"exported {len(exported.cells)} cells to {args.out}; check it with: ci-magic verify {args.out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .reproduce.verify import verify

    mismatches, notes = verify(args.notebook, timeout=args.timeout, kernel_name=args.kernel)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for mismatch in mismatches:
        print(f"MISMATCH {mismatch}")
    if mismatches:
        print(f"{len(mismatches)} mismatch(es): {args.notebook} does not reproduce its recorded outputs.")
        return EXIT_FAILED
    print(f"ok: {args.notebook} reproduces its recorded outputs.")
    return EXIT_OK


def cmd_fake_server(args: argparse.Namespace) -> int:
    import time

    from .providers.fake import FakeModelServer

    server = FakeModelServer.from_json(args.spec, port=args.port).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ProviderConfigError) as exc:
        print(f"ci-magic: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CIMagicError as exc:
        print(f"ci-magic: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ci-magic: cancelled.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
