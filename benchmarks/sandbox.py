"""Sandbox speed, as ratios to baselines measured in the same run.

    python benchmarks/sandbox.py [--rows 2000000] [--repeat 20]

1. child ready for code: a prestarted (warm) sandbox vs starting one cold        goal: warm <= 50 ms
2. execution overhead: Sandbox.run vs a bare jupyter_client execute of the same code     goal <= 1.05x
3. a 2M-row frame parent -> child: our transfer vs raw Arrow IPC write + mmap read (goal <= 1.2x) and vs
   pickle; an unchanged frame sent again (goal <= 1 ms)
4. context building for a 10M-row x 50-column frame                               goal <= 50 ms
Prints one line per figure and writes benchmarks/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from jupyter_client.manager import KernelManager

from ci_magic.context.frames import build_context
from ci_magic.core.interpreter import Interpreter
from ci_magic.core.settings import Limits
from ci_magic.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Any, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bare_execute(kc: Any, code: str) -> None:
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        mine = msg["parent_header"].get("msg_id") == msg_id
        if mine and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return


def readiness(tmp: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    cold = Sandbox(Limits(), user_dir=tmp)
    cold.run("pass")
    cold_s = time.perf_counter() - t0
    cold.close()
    interp = Interpreter(base_url="http://127.0.0.1:9/v1", user_dir=tmp)
    interp.prestart()
    time.sleep(cold_s * 2 + 2)  # the user is reading the notebook meanwhile
    t0 = time.perf_counter()
    interp.sandbox.run("pass")
    warm_s = time.perf_counter() - t0
    interp.close()
    return {"cold_ms": cold_s * 1000, "warm_ms": warm_s * 1000, "ratio": warm_s / cold_s}


def overhead(tmp: Path, repeat: int) -> dict[str, float]:
    code = "import numpy as _np\n_x = _np.random.default_rng(0).random(200_000).sum()"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    bare_execute(kc, "import numpy")
    with Sandbox(Limits(), user_dir=tmp) as sb:
        sb.run(code)
        # Interleaved, so that load from anything else on the machine hits both sides alike.
        bare_samples, our_samples = [], []
        for _ in range(repeat):
            bare_samples.append(timed(lambda: bare_execute(kc, code), 1))
            our_samples.append(timed(lambda: sb.run(code), 1))
        bare, ours = statistics.median(bare_samples), statistics.median(our_samples)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return {"bare_ms": bare * 1000, "ours_ms": ours * 1000, "ratio": ours / bare}


def transfer(tmp: Path, rows: int, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "value": rng.random(rows),
            "group": pd.Series(rng.choice(["north", "south", "east", "west"], rows), dtype="str"),
            "when": pd.date_range("2020-01-01", periods=rows, freq="s"),
        }
    )
    with Sandbox(Limits(memory_mb=8192), user_dir=tmp) as sb:
        raw_path = sb.xfer_dir / "raw.arrow"
        pkl_path = sb.xfer_dir / "raw.pkl"
        read_raw = (
            "import pyarrow as _pa\n"
            f"with _pa.memory_map({str(raw_path)!r}) as _s:\n    _raw = _pa.ipc.open_file(_s).read_all().to_pandas()"
        )
        read_pickle = f"import pickle as _p\nwith open({str(pkl_path)!r}, 'rb') as _f:\n    _pk = _p.load(_f)"

        def raw() -> None:
            table = pa.Table.from_pandas(frame)
            with pa.OSFile(str(raw_path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            sb.kernel.execute(read_raw)

        def pickled() -> None:
            with open(pkl_path, "wb") as fh:
                pickle.dump(frame, fh, protocol=5)
            sb.kernel.execute(read_pickle)

        def ours() -> None:
            sb.send_frames({"big": frame}, force=True)

        raw_s, pickle_s, ours_s = timed(raw, repeat), timed(pickled, repeat), timed(ours, repeat)
        unchanged_s = timed(lambda: sb.send_frames({"big": frame}), repeat * 10)
    return {
        "rows": rows,
        "ours_ms": ours_s * 1000,
        "raw_arrow_ms": raw_s * 1000,
        "pickle_ms": pickle_s * 1000,
        "ratio_vs_arrow": ours_s / raw_s,
        "ratio_vs_pickle": ours_s / pickle_s,
        "unchanged_ms": unchanged_s * 1000,
    }


def context_cost(repeat: int) -> dict[str, float]:
    frame = pd.DataFrame(
        np.random.default_rng(0).random((10_000_000, 50)), columns=[f"c{i}" for i in range(50)]
    )
    small = frame.head(1000)
    big_s = timed(lambda: build_context({"big": frame}), repeat)
    small_s = timed(lambda: build_context({"small": small}), repeat)
    return {"ten_million_rows_ms": big_s * 1000, "thousand_rows_ms": small_s * 1000, "ratio": big_s / small_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = {
            "readiness": readiness(tmp),
            "overhead": overhead(tmp, args.repeat * 3),
            "transfer": transfer(tmp, args.rows, max(3, args.repeat // 2)),
            "context": context_cost(args.repeat),
        }
    r, o, t, c = results["readiness"], results["overhead"], results["transfer"], results["context"]
    print(
        f"child ready for code: warm {r['warm_ms']:.1f} ms vs cold {r['cold_ms']:.0f} ms "
        f"(ratio {r['ratio']:.3f}; goal warm <= 50 ms)"
    )
    print(
        f"execution overhead: ours {o['ours_ms']:.2f} ms vs bare jupyter_client {o['bare_ms']:.2f} ms "
        f"(ratio {o['ratio']:.3f}; goal <= 1.05)"
    )
    print(
        f"{t['rows']:,}-row frame to the child: ours {t['ours_ms']:.0f} ms vs raw Arrow IPC {t['raw_arrow_ms']:.0f} ms "
        f"(ratio {t['ratio_vs_arrow']:.2f}; goal <= 1.2) vs pickle {t['pickle_ms']:.0f} ms "
        f"(ratio {t['ratio_vs_pickle']:.2f}); unchanged frame resend {t['unchanged_ms']:.3f} ms (goal <= 1 ms)"
    )
    print(
        f"context for 10M x 50: {c['ten_million_rows_ms']:.1f} ms vs {c['thousand_rows_ms']:.1f} ms for 1,000 "
        f"rows (ratio {c['ratio']:.2f}; goal <= 50 ms)"
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sandbox.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
