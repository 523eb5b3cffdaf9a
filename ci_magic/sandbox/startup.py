"""What every (re)start of the local sandbox is made of: the launcher's instructions, the kernel's environment
and the code it runs first.

Once per session, with isolation, the seccomp filter and the sandbox's passwd files are written into the
parent's private folder and bubblewrap's view of the user's folder is planned; without it, the working folder
gets links to the user's files. Before every start the launcher is told the limits, the fresh cgroups, the
pre-bound sockets and (with isolation) bubblewrap's command line. The kernel's environment is an allow-list of
the parent's (never a key or token), and its first code loads the helper module (``transfer.py``) from a file
so the sandbox never imports the ci_magic package.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.settings import Limits, is_secret_name
from . import isolation, seccomp
from .egress import packages

#: The name the helper module (``transfer.py``) has inside the kernel.
CHILD_MODULE = "_ci_child"
#: What every sandbox imports before the code runs (here and on a gateway; an export's environment cell repeats
#: it). Text is read as ``object`` columns, as before pandas 3: generated code — like most analysis code a model
#: learnt from — finds text columns by ``dtype == 'object'``, never true of pandas 3's ``str`` columns, so it
#: silently found none. Warnings that something works now and will not in pandas 4 (``inplace=True`` on most
#: methods) are left out: a line of noise in the cell and a hundred prompt tokens in every repair.
PRELOADS = """\
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import warnings as _w
with _w.catch_warnings():
    _w.simplefilter("ignore")  # pandas 3 calls the option deprecated
    try:
        pd.set_option("future.infer_string", False)
    except KeyError:  # pandas 4: the option is gone (OptionError is a KeyError)
        pass
if hasattr(pd.errors, "Pandas4Warning"):  # "deprecated, removed in pandas 4": not the question's business
    _w.filterwarnings("ignore", category=pd.errors.Pandas4Warning)
del _w
"""
#: Environment variables the child may see; everything else (keys above all) is dropped.
ENV_ALLOW = ("LANG", "LANGUAGE", "TZ", "TERM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ENV_ALLOW_PREFIXES = ("LC_",)
#: This folder: shown read-only inside the sandbox, for the launcher and the helper module.
HERE = Path(__file__).resolve().parent


def child_environment(home: str, tmp: str, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: an allow-list of the parent's (never a key or token), plus its own places."""
    source = os.environ if parent is None else parent
    env = {
        k: v
        for k, v in source.items()
        if (k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)) and not is_secret_name(k)
    }
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        HOME=home,
        TMPDIR=tmp,
        MPLCONFIGDIR=f"{home}/.config/matplotlib",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        IPYTHONDIR=f"{home}/.ipython",
        JUPYTER_CONFIG_DIR=f"{home}/.jupyter",
        JUPYTER_DATA_DIR=f"{home}/.local/share/jupyter",
        JUPYTER_RUNTIME_DIR=f"{home}/.local/share/jupyter/runtime",
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=source.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    )
    return env


def startup_code(module_file: str, egress: str | None = None) -> str:
    """The kernel's first code: the helper module exec'd from its file, the usual imports, ``losses.py``'s
    watch on pd.to_numeric, and with an ``egress`` socket the local end of the egress proxy
    (``egress/forward.py``: proxy variables set)."""
    forward = str(HERE / "egress" / "forward.py")
    losses = str(HERE / "losses.py")  # pd.to_numeric says what it coerced away
    start_egress = (
        "_f = {}\n"
        f"exec(compile(open({forward!r}).read(), {forward!r}, 'exec'), _f)\n"
        f"_f['start']({egress!r}); del _f\n"
        # The package layer exists from now on; the kernel's imports found it missing, and a folder found missing
        # is never looked at again unless its cache entry goes.
        f"__import__('os').makedirs({packages.SITE!r}, exist_ok=True)\n"
        f"__import__('sys').path_importer_cache.pop({packages.SITE!r}, None)\n"
        if egress
        else ""
    )
    return start_egress + (
        "import sys as _s, types as _t\n"
        f"_m = _t.ModuleType({CHILD_MODULE!r}); _m.__file__ = {module_file!r}\n"
        f"exec(compile(open({module_file!r}).read(), {module_file!r}, 'exec'), _m.__dict__)\n"
        f"_s.modules[{CHILD_MODULE!r}] = _m\n"
        "del _t, _m\n"
        f"import {CHILD_MODULE}\n"
        + PRELOADS
        + f"_l = {{'__name__': '_ci_losses'}}; exec(compile(open({losses!r}).read(), {losses!r}, 'exec'), _l)\n"
        "_l['_install'](); del _l\n"
        # Last on sys.path (never first, see launcher.py): the user's own modules import, installed ones win.
        "import os as _o; _s.path.append(_o.getcwd()); del _o, _s\n"
    )


@dataclass(frozen=True)
class BwrapPlan:
    """What bubblewrap builds at every start of a session, the same each time."""

    probe: isolation.Probe
    view: isolation.View
    seccomp: bool  # whether the filter could be written (the report says so when not)


def plan_bwrap(
    control: Path,
    probe: isolation.Probe,
    user_dir: Path,
    network: bool,
    problems: list[str],
    warnings: list[str],
) -> BwrapPlan:
    """Write the seccomp filter and the passwd files into ``control`` and plan the view of ``user_dir``; what
    is missing goes to ``problems`` (the isolation report), what the user should know to ``warnings``."""
    try:
        (control / "seccomp.bpf").write_bytes(seccomp.program())
        with_seccomp = True
    except seccomp.SeccompUnavailable as exc:
        with_seccomp = False
        problems.append(f"no seccomp filter ({exc})")
    uid = isolation.ROOT_MODE_UID if probe.mode == "privileged" else isolation.USERNS_UID
    for name, text in isolation.passwd_files(uid).items():
        path = control / name
        path.write_text(text)
        path.chmod(0o644)
    view = isolation.plan(user_dir, extra_ro=[str(HERE)], network=network)
    if view.omitted:
        warnings.append(
            f"{view.omitted} entries of {user_dir} are not visible in the sandbox (it shows the "
            f"first {isolation.MAX_USER_ENTRIES})."
        )
    workdir = isolation.WORKDIR + "/"
    unscanned = [p[len(workdir) :] for p in view.unscanned if p.startswith(workdir)]
    if unscanned:
        shown = ", ".join(repr(p) for p in unscanned[:5]) + (" …" if len(unscanned) > 5 else "")
        warnings.append(
            f"{len(unscanned)} folder(s) of {user_dir} are shown empty in the sandbox ({shown}): they are deeper "
            f"than {isolation.MAX_COVER_DEPTH} levels or hold too many entries to check for hidden files "
            "(.env, keys) and sockets, and what is not checked is not shown."
        )
    return BwrapPlan(probe, view, with_seccomp)


def link_user_files(user_dir: Path, host_work: Path) -> None:
    """Without isolation the working folder holds links to the user's files (nothing protects them)."""
    try:
        entries = sorted(p for p in user_dir.iterdir() if not p.name.startswith("."))
    except OSError:
        return
    for entry in entries[: isolation.MAX_USER_ENTRIES]:
        target = host_work / entry.name
        if not target.exists():
            target.symlink_to(entry)


def tmp_mb(limits: Limits) -> int:
    """The size of the sandbox's /tmp and of its /dev/shm, each."""
    return max(16, limits.disk_mb // 4)


def memory_bytes(limits: Limits) -> int:
    """The memory cgroup's limit: the kernel's memory and every tmpfs the sandbox can fill."""
    return (limits.memory_mb + limits.disk_mb + 2 * tmp_mb(limits)) * 1024 * 1024


def launcher_config(
    limits: Limits,
    *,
    cgroups: dict[str, dict[str, str]],
    sockets: dict[str, int],
    control: Path,
    inbox: Path,
    bwrap: BwrapPlan | None,
    workdir: Path | None,
    egress: Path | None = None,
) -> dict[str, Any]:
    """The launcher's instructions for one start: in bubblewrap when there is a ``bwrap`` plan, else as a plain
    child process in ``workdir``."""
    config: dict[str, Any] = {
        "limits": asdict(limits),
        "cgroups": cgroups,
        "sockets": sockets,
        "log": str(control / "kernel.log"),
    }
    inner: dict[str, Any] = {"sockets": sockets, "isolated": bwrap is not None}
    if bwrap is None:
        return {**config, "workdir": str(workdir), "bwrap": None, "inner": inner}
    args = isolation.bwrap_args(
        bwrap.view,
        mode=bwrap.probe.mode,
        network=limits.network,
        disk_mb=limits.disk_mb,
        tmp_mb=tmp_mb(limits),
        control={
            isolation.CONNECTION: str(control / "connection.json"),
            "/etc/passwd": str(control / "passwd"),
            "/etc/group": str(control / "group"),
            **({isolation.EGRESS: str(egress)} if egress is not None else {}),
        },
        inbox=str(inbox),
        seccomp=bwrap.seccomp,
    )
    inner["drop_to"] = isolation.ROOT_MODE_UID if bwrap.probe.mode == "privileged" else None
    inner["connection_file"] = isolation.CONNECTION
    return {
        **config,
        "bwrap": bwrap.probe.bwrap,
        "bwrap_args": args,
        "seccomp": str(control / "seccomp.bpf"),
        "inner": inner,
    }
