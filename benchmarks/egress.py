"""The egress proxy's cost: a 50 MB download from a loopback HTTP server by code in the sandbox, through the
proxy (the sandbox's only way out; the name mapped to 127.0.0.1), vs the same code run directly on the host
against 127.0.0.1, measured in the same run. Loopback only: nothing contacts an outside address.

    python benchmarks/egress.py [--repeat 5] [--mb 50]

Prints the medians and their ratio (goal ≤ 1.3×) and writes benchmarks/results/egress.json. Also measured, as
the floor any relaying proxy stands on: the same download on the host through one bare relay (a thread pair
moving the bytes with the proxy's own splice pump, no policy, no sandbox) — what one extra hop costs here.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ci_magic.core.settings import Limits
from ci_magic.sandbox import Sandbox
from ci_magic.sandbox.egress.forward import pump
from ci_magic.sandbox.egress.proxy import MappedResolver

ROOT = Path(__file__).resolve().parents[1]
FETCH = """\
import time, urllib.request
t0 = time.perf_counter()
with urllib.request.urlopen({url!r}, timeout=120) as r:
    n = 0
    while chunk := r.read(1 << 20):
        n += len(chunk)
print(n, time.perf_counter() - t0)
"""


def server(size: int) -> http.server.ThreadingHTTPServer:
    blob = b"x" * size

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(blob)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def bare_relay(port: int) -> socket.socket:
    """A listener whose connections are carried to 127.0.0.1:``port`` by two splice pumps, nothing else."""

    def carry(client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", port))
        for s in (client, upstream):
            s.setblocking(False)
        seen = [time.monotonic()]
        back = threading.Thread(target=pump, args=(upstream, client, 60.0, None, seen), daemon=True)
        back.start()
        pump(client, upstream, 60.0, None, seen)
        back.join()
        client.close()
        upstream.close()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=carry, args=(client,), daemon=True).start()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    threading.Thread(target=serve, daemon=True).start()
    return listener


def on_host(url: str, size: int) -> float:
    host = subprocess.run(
        [sys.executable, "-c", FETCH.format(url=url)], capture_output=True, text=True, check=True
    )
    return seconds(host.stdout, size)


def seconds(printed: str, size: int) -> float:
    n, took = printed.split()
    assert int(n) == size, printed
    return float(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=int, default=50)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    httpd = server(size)
    port = httpd.server_address[1]
    direct, proxied = [], []
    with tempfile.TemporaryDirectory() as folder:
        limits = Limits(allow_hosts=("data.test", f"127.0.0.1:{port}"), network_budget_mb=4 * args.mb)
        with Sandbox(limits, folder, resolver=MappedResolver({"data.test": ["127.0.0.1"]})) as sandbox:
            if not sandbox.isolated:
                sys.exit(f"no isolation here ({sandbox.probe.problem}): there is no proxy to measure")
            for _ in range(args.repeat):
                result = sandbox.run(FETCH.format(url=f"http://data.test:{port}/"))
                assert result.ok, result.error_value
                proxied.append(seconds(result.stdout(), size))
                direct.append(on_host(f"http://127.0.0.1:{port}/", size))
    relay = bare_relay(port)
    relayed = [on_host(f"http://127.0.0.1:{relay.getsockname()[1]}/", size) for _ in range(args.repeat)]
    relay.close()
    httpd.shutdown()
    out = {
        "mb": args.mb,
        "repeat": args.repeat,
        "direct_s": round(statistics.median(direct), 4),
        "through_proxy_s": round(statistics.median(proxied), 4),
        "ratio": round(statistics.median(proxied) / statistics.median(direct), 2),
        "bare_relay_s": round(statistics.median(relayed), 4),
        "bare_relay_ratio": round(statistics.median(relayed) / statistics.median(direct), 2),
        "direct_mb_s": round(args.mb / statistics.median(direct), 1),
        "through_proxy_mb_s": round(args.mb / statistics.median(proxied), 1),
        "command": f"python benchmarks/egress.py --repeat {args.repeat} --mb {args.mb}",
    }
    print(json.dumps(out, indent=2))
    path = ROOT / "benchmarks" / "results" / "egress.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
