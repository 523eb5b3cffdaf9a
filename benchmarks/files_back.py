"""Files back: copying what the code wrote out of a real sandbox into the user's folder, as a ratio to ``cp``.

    python benchmarks/files_back.py [--repeat 5] [--files 100] [--mb 10] [--dest DIR]

Starts a real sandbox (``ci_magic.sandbox.Sandbox``: bubblewrap where the machine allows it), runs code in it
that writes ``--files`` files of ``--mb`` MB (10^6 bytes) of random bytes into its working folder (1 GB by
default), then times, interleaved, ``--repeat`` times each, into a fresh folder under ``--dest`` (default: the
temp dir, a disk here):

- ours: ``ci_magic.engine.delivery.deliver`` of the files the sandbox lists (``written_files``), which reads
  each through the executor's ``copy_file`` (from outside the sandbox, no link followed), hashes it (sha256)
  and writes it under a free name;
- cp: one ``cp -r`` subprocess of the same folder, read through the same way in (the sandbox's working folder
  opened from outside, passed to cp as a descriptor).

Neither syncs to disk; the page cache is flushed (``sync``, untimed) and the copy deleted between runs. The
ratio is of medians (wall time). Goal: ratio <= 1.2.

To say where the time goes, it also times (interleaved, with the minor page faults of each) the parts of
``deliver`` through ``copy_file`` — read only, read + sha256, read + write, read + sha256 + write — and the
same copy done the way ``cp`` does it, reading into one reused 1 MiB buffer (what ``copy_file`` would do
with the fix suggested in the results), with and without sha256. Prints one line per figure and writes
benchmarks/results/files_back.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ci_magic
from ci_magic.core.settings import Limits
from ci_magic.engine import delivery
from ci_magic.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
GOAL = 1.2
BUFFER = 1 << 20


class Null:
    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def fresh(base: Path) -> Path:
    os.sync()  # untimed: dirty pages of the previous copy must not slow this one
    return Path(tempfile.mkdtemp(prefix="files_back-", dir=base))


def drop(folder: Path) -> None:
    shutil.rmtree(folder)
    os.sync()


def timed(fn: Callable[[], Any], who: int = resource.RUSAGE_SELF) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, minor page faults) of one call, of this process or of its children."""
    before, t0 = resource.getrusage(who), time.perf_counter()
    fn()
    wall, after = time.perf_counter() - t0, resource.getrusage(who)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_minflt - before.ru_minflt


def source_fd(sandbox: Sandbox) -> int:
    """The sandbox's working folder opened from outside: what ``copy_file`` reads from, for ``cp`` to read
    from too. (A private method: the benchmark needs the very same way in, not a public API.)"""
    return int(sandbox._workdir_fd())


def reused_buffer_copy(folder: str, names: list[str], dest: Path, hashing: bool) -> None:
    """Copy as cp does (one buffer, reused), optionally hashing each chunk before it is written."""
    view = memoryview(bytearray(BUFFER))
    for name in names:
        src = os.open(f"{folder}/{name}", os.O_RDONLY | os.O_NOFOLLOW)
        out = os.open(dest / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        digest = hashlib.sha256()
        try:
            while n := os.readv(src, [view]):
                if hashing:
                    digest.update(view[:n])
                written = 0
                while written < n:
                    written += os.write(out, view[written:n])
        finally:
            os.close(src)
            os.close(out)


def summary(got: list[tuple[float, float, int]]) -> dict[str, float]:
    return {
        "wall_s": statistics.median(s[0] for s in got),
        "cpu_s": statistics.median(s[1] for s in got),
        "minor_faults": statistics.median(s[2] for s in got),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--mb", type=int, default=10, help="size of one file in MB (10^6 bytes)")
    ap.add_argument(
        "--dest", default=tempfile.gettempdir(), help="where the copies go (a folder to make them in)"
    )
    args = ap.parse_args()
    total = args.files * args.mb * MB
    base = Path(args.dest)
    disk_mb = total // 2**20 + 512  # the sandbox's tmpfs holds the files, its home and /tmp
    user_dir = Path(tempfile.mkdtemp(prefix="files_back-user-"))
    sandbox = Sandbox(Limits(disk_mb=disk_mb, max_file_mb=disk_mb, timeout_s=600), user_dir=user_dir)
    try:
        made = sandbox.run(
            "import os\nos.makedirs('out', exist_ok=True)\n"
            f"for i in range({args.files}):\n"
            f"    with open(f'out/part_{{i:03d}}.bin', 'wb') as f:\n"
            f"        f.write(os.urandom({args.mb * MB}))\n"
        )
        if made.error_name:
            raise SystemExit(
                f"writing the files in the sandbox failed: {made.error_name}: {made.error_value}"
            )
        paths = sandbox.written_files()
        assert len(paths) == args.files, paths[:5]
        cap = 2 * total  # Settings.max_files_mb (500 MiB by default) would stop a 1 GB ask half-way
        fd = source_fd(sandbox)
        inside = f"/proc/self/fd/{fd}/out"
        names = sorted(os.listdir(inside))

        def ours(dest: Path) -> list[delivery.DeliveredFile]:
            return delivery.deliver(sandbox, paths, dest, overwrite=False, cap_bytes=cap)

        def cp(dest: Path) -> None:
            subprocess.run(["cp", "-r", inside, str(dest)], pass_fds=[fd], check=True)

        # Once each, checked: the same bytes arrive both ways.
        check_ours, check_cp = fresh(base), fresh(base)
        got = ours(check_ours)
        cp(check_cp)
        assert all(f.saved_as == f.path and f.bytes == args.mb * MB for f in got), got[:3]
        for f in got[:3]:
            assert (check_ours / f.path).read_bytes() == (check_cp / f.path).read_bytes()
            assert hashlib.sha256((check_cp / f.path).read_bytes()).hexdigest() == f.sha256
        drop(check_ours)
        drop(check_cp)

        def through_copy_file(sink: Callable[[Path, str], Any]) -> Callable[[Path], None]:
            def run(dest: Path) -> None:
                for p in paths:
                    with open(dest / Path(p).name, "wb") as out:
                        sandbox.copy_file(p, sink(out, p) if sink is not None else out, cap)

            return run

        def read_only(dest: Path) -> None:
            for p in paths:
                sandbox.copy_file(p, Null(), cap)

        def read_hash(dest: Path) -> None:
            for p in paths:
                sandbox.copy_file(p, delivery._Hashing(None), cap)

        kinds: dict[str, tuple[Callable[[Path], Any], int]] = {
            "deliver": (ours, resource.RUSAGE_SELF),
            "cp -r": (cp, resource.RUSAGE_CHILDREN),
            "copy_file: read": (read_only, resource.RUSAGE_SELF),
            "copy_file: read+sha256": (read_hash, resource.RUSAGE_SELF),
            "copy_file: read+write": (through_copy_file(lambda out, p: out), resource.RUSAGE_SELF),
            "copy_file: read+sha256+write": (
                through_copy_file(lambda out, p: delivery._Hashing(out)),
                resource.RUSAGE_SELF,
            ),
            "reused 1 MiB buffer: read+write": (
                lambda d: reused_buffer_copy(inside, names, d, False),
                resource.RUSAGE_SELF,
            ),
            "reused 1 MiB buffer: read+sha256+write": (
                lambda d: reused_buffer_copy(inside, names, d, True),
                resource.RUSAGE_SELF,
            ),
        }
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in kinds}
        for r in range(args.repeat):  # interleaved (order reversed every other round): load hits all alike
            order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
            for name in order:
                fn, who = kinds[name]
                dest = fresh(base)
                samples[name].append(timed(lambda fn=fn, d=dest: fn(d), who))
                drop(dest)
        os.close(fd)
    finally:
        sandbox.close()
        shutil.rmtree(user_dir, ignore_errors=True)

    figures = {name: summary(got) for name, got in samples.items()}
    cp_s = figures["cp -r"]["wall_s"]
    ratio = figures["deliver"]["wall_s"] / cp_s
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(base)], capture_output=True, text=True)
    results = {
        "command": " ".join(["python", "benchmarks/files_back.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "ci_magic_from": str(Path(ci_magic.__file__).parent),
        # The commit alone does not say which delivery.py ran when a working copy differs from it.
        "delivery_py_sha256": hashlib.sha256(Path(delivery.__file__).read_bytes()).hexdigest(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "sandbox_isolated": sandbox.isolated,
        "files": args.files,
        "bytes": total,
        "destination": {"folder": str(base), "filesystem": fs.stdout.strip()},
        "repeat": args.repeat,
        "deliver_s": [s[0] for s in samples["deliver"]],
        "cp_s": [s[0] for s in samples["cp -r"]],
        "ratio": ratio,
        "goal": GOAL,
        "medians": figures,
        "ratios_to_cp": {name: f["wall_s"] / cp_s for name, f in figures.items()},
    }
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; sandbox isolated: {sandbox.isolated}"
    )
    print(
        f"{args.files} files, {total / 1e9:.2f} GB, into {base} ({fs.stdout.strip()}); medians of {args.repeat}"
    )
    for name, f in figures.items():
        print(
            f"  {name:40s} {f['wall_s']:5.2f} s  ({f['wall_s'] / cp_s:4.2f}x cp)  CPU {f['cpu_s']:5.2f} s  "
            f"minor faults {f['minor_faults']:,.0f}"
        )
    print(f"ratio deliver / cp: {ratio:.2f} (goal <= {GOAL}): {'met' if ratio <= GOAL else 'NOT met'}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "files_back.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
