"""``ci-magic``: the same loop from a shell. Exit codes: 0 success, 1 attempts exhausted, 2 usage error."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli_agents as agents_cli
from .cli_io import live_text, load_table, save_images
from .cli_settings import data_option, setting_options, settings_of
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
    data_option(ask)
    setting_options(ask)
    ask.add_argument("--json", action="store_true", help="Print the whole result as JSON.")
    ask.add_argument("--save-images", metavar="DIR", help="Write image outputs as PNG files into DIR.")
    ask.add_argument("--quiet", "-q", action="store_true", help="Do not stream the model's text to stderr.")
    ask.add_argument(
        "--budget",
        help="Stop at this many tokens (5000) or dollars ($0.05, 0.05usd); in dollars, an unknown model needs "
        "--prices.",
    )
    ask.set_defaults(func=cmd_ask)

    export = sub.add_parser(
        "export", help="A notebook built with %%ask → a plain notebook that re-runs anywhere."
    )
    export.add_argument("notebook")
    export.add_argument("-o", "--out", required=True, help="The .ipynb to write.")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser("verify", help="Re-execute an export in a fresh sandbox and compare its outputs.")
    verify.add_argument("notebook")
    verify.add_argument("--timeout", type=float, default=600.0, help="Seconds one cell may run.")
    verify.add_argument(
        "--unsandboxed",
        action="store_true",
        help="Run the code in a plain kernel with your environment, outside the sandbox (only for a notebook "
        "you have read and trust).",
    )
    verify.add_argument(
        "--kernel", default=None, help="With --unsandboxed: the kernel's name (default: the notebook's)."
    )
    verify.set_defaults(func=cmd_verify)

    ev = sub.add_parser(
        "eval", help="Run DABench-format questions through the %%ask loop; write predictions."
    )
    ev.add_argument("questions", help="JSONL: id, question, constraints, format, file_name")
    ev.add_argument("--tables", required=True, help="Folder holding the questions' tables.")
    ev.add_argument("--out", required=True, help="Predictions JSONL to write.")
    ev.add_argument("--limit", type=int, default=None, help="Only the first N questions.")
    ev.add_argument(
        "--fresh",
        action="store_true",
        help="Ask the model every time, never replay from the reply cache (for timings); replies are still stored.",
    )
    ev.add_argument(
        "--labels",
        metavar="JSONL",
        help="Expected answers (id, common_answers): the progress shows right so far.",
    )
    ev.add_argument("--quiet", "-q", action="store_true", help="No progress bar or lines (for logs).")
    setting_options(ev)
    ev.set_defaults(func=cmd_eval)

    gateway = sub.add_parser(
        "gateway",
        help="Try the gateway sandbox on this machine: a Jupyter Enterprise Gateway on loopback.",
        description="Enterprise Gateway pins older Jupyter libraries, so it lives in an environment of its own "
        "(install: ci-magic gateway install). `start` runs it with a kernelspec using this Python and prints "
        "the two settings that point %%ask (or ci-magic ask --gateway-url) at it.",
    )
    gateway.add_argument("action", choices=("install", "start"))
    gateway.add_argument("--port", type=int, default=8889)
    gateway.set_defaults(func=cmd_gateway)

    agents_cli.register(sub)  # `mcp` and `acp`: ci_magic for other agents

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


def cmd_ask(args: argparse.Namespace) -> int:
    from .core.events import Code, Event, ExecDone, ModelStart, Output, Token
    from .engine.interpreter import Interpreter

    settings = settings_of(args)
    frames = dict(load_table(spec) for spec in args.data)

    def progress(event: Event) -> None:
        if args.quiet or args.json:
            return
        data = event.data
        if isinstance(data, ModelStart):
            say(f"\n── attempt {event.attempt}: {settings.model or 'model'} is writing…", sys.stderr)
        elif isinstance(data, Token):
            say(data.text, sys.stderr, end="")
        elif isinstance(data, Code):
            say(f"\n── attempt {event.attempt}: running in the sandbox…", sys.stderr)
        elif isinstance(data, Output):  # what the code prints, as it prints it
            say(live_text(data.ops), sys.stderr, end="")
        elif isinstance(data, ExecDone):
            ended = f"failed: {data.error[:300]}" if data.error else "done"
            say(f"\n── attempt {event.attempt} {ended} ({data.seconds:.1f} s)", sys.stderr)

    # The current folder: its files are what the model sees, and where the files the code writes arrive.
    here = Path.cwd()
    with Interpreter(settings, user_dir=here, files_dir=here) as interpreter:
        result = interpreter.ask(args.question, frames, keep=None, on_event=progress, budget=args.budget)
    images = save_images(result.outputs, args.save_images)
    if args.json:
        doc = result.to_json()
        doc["saved_images"] = images
        print(json.dumps(doc, indent=2, default=str))  # JSON escapes control characters itself
        return EXIT_OK if result.ok else EXIT_FAILED
    say("\n" + "=" * 20 + " code " + "=" * 20)
    say((result.code or "(no code)").rstrip())
    say("=" * 20 + " output " + "=" * 18)
    final = result.final
    text = final.execution.text() if final is not None and final.execution is not None else ""
    say(text.rstrip() or "(no output)")
    for path in images:
        say(f"[image saved to {path}]")
    for file in result.files:
        where = f"saved as {file.saved_as}" if file.saved_as else "not saved"
        say(f"[file {file.path}: {file.bytes:,} bytes, {where}{f'; {file.note}' if file.note else ''}]")
    from .notebook.cells import answer_lines, best_effort_line

    usage = result.usage
    verdict = "succeeded" if result.ok else "failed"
    say("=" * 46)
    for line in answer_lines(result):
        say(line)
    if result.best_effort is not None:
        say(best_effort_line(result))
        say(result.best_effort.text)
    say(
        f"{verdict} after {len(result.attempts)} attempt(s) · {usage.prompt_tokens:,} prompt + "
        f"{usage.completion_tokens:,} completion tokens · {result.seconds:.1f} s · {result.model} @ "
        f"{result.endpoint}"
    )
    for use in result.network:  # every host the code reached for, allowed or refused
        say(f"network: {use.line()}")
    for warning in result.warnings:  # e.g. the sandbox ran without isolation: never silent
        say(f"warning: {warning}")
    return EXIT_OK if result.ok else EXIT_FAILED


def say(text: str, stream: Any = None, end: str = "\n") -> None:
    """Print text that came from the model or the sandbox: without terminal control sequences, which could
    rewrite the screen, set the window title or write to the clipboard."""
    from .sandbox.sanitize import terminal_text

    print(terminal_text(text), end=end, file=stream or sys.stdout, flush=stream is sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.progress import Progress, read_labels
    from .evaluation.runner import read_questions, run_eval

    questions = read_questions(Path(args.questions))[: args.limit]
    tables = Path(args.tables)
    if not tables.is_dir():
        raise UsageError(f"--tables {args.tables!r} is not a folder.")
    settings = settings_of(args)
    labels = read_labels(Path(args.labels)) if args.labels else None
    progress = Progress(len(questions), sys.stderr, quiet=args.quiet, labels=labels)
    solved = 0
    with open(args.out, "w", encoding="utf-8") as out:
        records = run_eval(
            questions,
            tables,
            out,
            settings=settings,
            attempts=settings.attempts,
            fresh=args.fresh,
            progress=progress,
        )
        for record in records:
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

    mismatches, notes = verify(
        args.notebook, timeout=args.timeout, kernel_name=args.kernel, sandboxed=not args.unsandboxed
    )
    where = "in a plain kernel, outside the sandbox" if args.unsandboxed else "in a fresh sandbox"
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for mismatch in mismatches:
        print(f"MISMATCH {mismatch}")
    if mismatches:
        print(
            f"{len(mismatches)} mismatch(es): {args.notebook} does not reproduce its recorded outputs ({where})."
        )
        return EXIT_FAILED
    print(f"ok: {args.notebook} reproduces its recorded outputs ({where}).")
    return EXIT_OK


def cmd_gateway(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    import time

    from .sandbox.gateway.server import GATEWAY_VERSION, gateway_venv, start_local_gateway

    if args.action == "install":
        venv = gateway_venv()
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            f"jupyter-enterprise-gateway=={GATEWAY_VERSION}",
        ]
        if subprocess.run(pip).returncode != 0:
            raise CIMagicError(f"Installing Enterprise Gateway into {venv} failed (see pip's message above).")
        print(
            f"Enterprise Gateway {GATEWAY_VERSION} is installed in {venv}; start it with: ci-magic gateway start"
        )
        return EXIT_OK

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(EXIT_OK)

    # The gateway runs in a session of its own (Ctrl-C in this terminal must not reach its kernels first): on
    # `kill` or a closed terminal, leave through the `with` below, which stops it and its kernels.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    with start_local_gateway(args.port) as gw:
        print(
            f"Enterprise Gateway is running at {gw.url} (local kernels, this Python). Point ci_magic at it:"
        )
        print(f"  export CI_MAGIC_GATEWAY_TOKEN={gw.token}")
        print(f'  %config Ask.gateway_url = "{gw.url}"      # or: ci-magic ask --gateway-url {gw.url} "..."')
        print("Ctrl-C stops it (and its kernels).", flush=True)
        try:
            while gw.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
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
        say(f"ci-magic: {exc}", sys.stderr)
        return EXIT_USAGE
    except CIMagicError as exc:  # may quote the sandbox (a kernel's last words): no control sequences
        say(f"ci-magic: {exc}", sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ci-magic: cancelled.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
