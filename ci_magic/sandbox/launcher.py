"""Run as a script (never imported) in the child process: apply limits, then become the IPython kernel.

Rlimits are set here, in the process that then execs ``ipykernel_launcher``, because ``preexec_fn`` is unsafe
in the threaded parent. This file imports only the standard library so the child starts fast.

    python launcher.py '<limits json>' -- -f {connection_file}
"""

from __future__ import annotations

import json
import os
import resource
import sys

MB = 1024 * 1024


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    # Never raise above the hard limit we were given; lowering is always allowed.
    new = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (new, new))


def main(argv: list[str]) -> None:
    limits = json.loads(argv[1])
    rest = argv[argv.index("--") + 1 :]
    _limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * MB)
    _limit(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) * MB)
    _limit(resource.RLIMIT_CORE, 0)  # a segfaulting child must not litter the workdir with cores
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *rest])


if __name__ == "__main__":
    main(sys.argv)
