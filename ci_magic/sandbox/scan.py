"""What generated code mentions, read with ``ast`` before it runs: which frames to send, which names it made.

Only used to save work (send only the frames the code can touch) and to decide what "the code created" means
for bringing values back. Never for security: nothing here can be trusted to describe what the code will do.
"""

from __future__ import annotations

import ast


def code_names(code: str) -> set[str]:
    """Every identifier the code mentions, and its string constants (``globals()["sales"]`` reaches a frame)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()  # the kernel will report the syntax error; nothing needs sending
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


def assigned_names(code: str) -> set[str]:
    """Names the code binds (assignments, for-targets, with-as; imports excluded): what it "created"."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
