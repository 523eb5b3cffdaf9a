"""Sandbox speed, as ratios to baselines measured in the same run.

    python benchmarks/sandbox.py [--rows 2000000] [--repeat 20]

1. child ready for code: a prestarted (warm) sandbox vs starting one cold        goal: warm <= 50 ms
2. execution overhead: Sandbox.run vs a bare jupyter_client execute of the same code     goal <= 1.05x
3. a 2M-row frame parent -> child: our transfer vs raw Arrow IPC write + mmap read (goal <= 1.2x) and vs
   pickle; an unchanged frame sent again (goal <= 1 ms)
4. context building for a 10M-row x 50-column frame                               goal <= 50 ms
5. the gateway column: the same cell and the same frame through Jupyter Enterprise Gateway (its own process on
   loopback, local kernels), as ratios to the local sandbox and to the frame's raw Arrow IPC bytes sent over a
   loopback TCP socket to a plain Python process (goal <= 1.5x). Skipped when Enterprise Gateway is not installed.
Prints one line per figure and writes benchmarks/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import socket
import statistics
import struct
import subprocess
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
from ci_magic.core.settings import Limits
from ci_magic.engine.interpreter import Interpreter
from ci_magic.sandbox import Sandbox, isolation
from ci_magic.sandbox.gateway import GatewaySandbox
from ci_magic.sandbox.gateway.server import find_gateway, start_local_gateway

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


CELL = "import numpy as _np\n_x = _np.random.default_rng(0).random(200_000).sum()"


def overhead(tmp: Path, repeat: int) -> dict[str, float]:
    code = CELL
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


def frame_of(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "value": rng.random(rows),
            "group": pd.Series(rng.choice(["north", "south", "east", "west"], rows), dtype="str"),
            "when": pd.date_range("2020-01-01", periods=rows, freq="s"),
        }
    )


def transfer(tmp: Path, rows: int, repeat: int) -> dict[str, float]:
    frame = frame_of(rows)
    with Sandbox(Limits(memory_mb=8192), user_dir=tmp) as sb:
        # The parent writes into the sandbox's inbox (read-only inside): the same way for all three.
        raw_path, pkl_path = sb.inbox / "raw.arrow", sb.inbox / "raw.pkl"
        inside = isolation.INBOX if sb.isolated else str(sb.inbox)
        read_raw = (
            "import pyarrow as _pa\n"
            f"with _pa.memory_map({inside + '/raw.arrow'!r}) as _s:\n    _raw = _pa.ipc.open_file(_s).read_all().to_pandas()"
        )
        read_pickle = (
            f"import pickle as _p\nwith open({inside + '/raw.pkl'!r}, 'rb') as _f:\n    _pk = _p.load(_f)"
        )

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


#: The baseline's receiver: reads length-prefixed Arrow IPC bytes from loopback TCP, builds the frame, acks.
RAW_RECEIVER = """
import socket, struct, pyarrow as pa
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
while (head := conn.recv(8, socket.MSG_WAITALL)) and len(head) == 8:
    (size,) = struct.unpack("!Q", head)
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        got += conn.recv_into(view[got:], size - got)
    frame = pa.ipc.open_file(pa.py_buffer(data)).read_all().to_pandas()
    conn.sendall(b"k")
"""


def raw_over_socket(frame: pd.DataFrame, repeat: int) -> float:
    """Median seconds to serialise ``frame`` to Arrow IPC, send it over loopback TCP and build it there."""
    receiver = subprocess.Popen([sys.executable, "-c", RAW_RECEIVER], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    with socket.create_connection(("127.0.0.1", port)) as conn:

        def send() -> None:
            sink = pa.BufferOutputStream()
            table = pa.Table.from_pandas(frame)
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            data = sink.getvalue()
            conn.sendall(struct.pack("!Q", data.size))
            conn.sendall(memoryview(data))
            assert conn.recv(1) == b"k"

        seconds = timed(send, repeat)
    receiver.wait(30)
    receiver.stdout.close()
    return seconds


def gateway(tmp: Path, rows: int, repeat: int, local_transfer_ms: float) -> dict[str, float]:
    """The gateway column: per-execution overhead and a frame transfer, against the local sandbox and raw bytes."""
    frame = frame_of(rows)
    with (
        start_local_gateway() as gw,
        GatewaySandbox(Limits(memory_mb=8192), tmp, url=gw.url, token=gw.token) as remote,
        Sandbox(Limits(), user_dir=tmp) as local,
    ):
        remote.run(CELL)
        local.run(CELL)
        remote_samples, local_samples = [], []
        for _ in range(repeat):  # interleaved, so that load from elsewhere hits both alike
            remote_samples.append(timed(lambda: remote.run(CELL), 1))
            local_samples.append(timed(lambda: local.run(CELL), 1))
        remote_s, local_s = statistics.median(remote_samples), statistics.median(local_samples)
        transfers = max(3, repeat // 6)
        ours_s = timed(lambda: remote.send_frames({"big": frame}, force=True), transfers)
        unchanged_s = timed(lambda: remote.send_frames({"big": frame}), transfers * 10)
    raw_s = raw_over_socket(frame, transfers)
    return {
        "overhead_ms": remote_s * 1000,
        "local_overhead_ms": local_s * 1000,
        "overhead_ratio_vs_local": remote_s / local_s,
        "rows": rows,
        "transfer_ms": ours_s * 1000,
        "local_transfer_ms": local_transfer_ms,
        "raw_socket_ms": raw_s * 1000,
        "transfer_ratio_vs_local": ours_s * 1000 / local_transfer_ms,
        "transfer_ratio_vs_raw_socket": ours_s / raw_s,
        "unchanged_ms": unchanged_s * 1000,
    }


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
        if find_gateway() is not None:
            results["gateway"] = gateway(tmp, args.rows, args.repeat * 3, results["transfer"]["ours_ms"])
    with Sandbox(Limits(), user_dir=ROOT) as sb:
        results["isolation"] = sb.isolation_report
    r, o, t, c = results["readiness"], results["overhead"], results["transfer"], results["context"]
    print(f"isolation: {json.dumps(results['isolation'])}")
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
    if "gateway" in results:
        g = results["gateway"]
        print(
            f"gateway: execution overhead {g['overhead_ms']:.2f} ms vs local sandbox {g['local_overhead_ms']:.2f} ms "
            f"(ratio {g['overhead_ratio_vs_local']:.2f}); {g['rows']:,}-row frame {g['transfer_ms']:.0f} ms vs local "
            f"sandbox {g['local_transfer_ms']:.0f} ms (ratio {g['transfer_ratio_vs_local']:.2f}) vs raw Arrow IPC over "
            f"loopback TCP {g['raw_socket_ms']:.0f} ms (ratio {g['transfer_ratio_vs_raw_socket']:.2f}; goal <= 1.5); "
            f"unchanged frame resend {g['unchanged_ms']:.3f} ms"
        )
    else:
        print(
            "gateway: skipped (Jupyter Enterprise Gateway is not installed; see ci_magic/sandbox/gateway/server.py)"
        )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sandbox.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
