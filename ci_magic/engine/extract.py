"""Find the code in a model reply: fenced blocks first, then a reply that is bare code."""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY_LANGS = {"", "python", "py", "python3", "ipython", "pycon"}
#: A reply longer than this is clipped before parsing; a 50 kB reply must not stall anything.
MAX_REPLY_CHARS = 200_000


def extract_code(reply: str) -> str | None:
    """The Python code in ``reply``, or ``None`` when there is none.

    Several Python blocks are joined in order (models often split imports from the rest). A reply with no
    fences counts as code only when the whole of it parses as Python and is not a single bare name or
    sentence-like expression.
    """
    reply = reply[:MAX_REPLY_CHARS]
    blocks = [
        body
        for lang, body in _FENCE.findall(reply)
        if lang.lower() in _PY_LANGS and body.strip() and not (lang == "" and _is_output_block(body))
    ]
    if blocks:
        return _strip_prompts("\n\n".join(b.strip("\n") for b in blocks)).rstrip() + "\n"
    text = reply.strip()
    if not text or "```" in text:
        return None
    return text + "\n" if _looks_like_code(text) else None


def _looks_like_code(text: str) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    if not tree.body:
        return False
    # "Hello" or "Sure" parse as expressions; require something that does work.
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        return isinstance(tree.body[0].value, ast.Call)
    return True


def _is_output_block(body: str) -> bool:
    """A ```-block without a language that is really sample output, not code."""
    try:
        ast.parse(_strip_prompts(body))
    except SyntaxError:
        return True
    return False


def _strip_prompts(code: str) -> str:
    """Remove ``>>> ``/``... `` prompts when the model wrote a console session."""
    lines = code.splitlines()
    if lines and all(ln.startswith((">>>", "...")) or not ln.strip() for ln in lines):
        return "\n".join(ln[4:] if len(ln) > 3 else "" for ln in lines)
    return code
