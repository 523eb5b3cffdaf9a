"""Plain, re-runnable notebooks from %%ask sessions (export), and their check by re-execution (verify)."""
