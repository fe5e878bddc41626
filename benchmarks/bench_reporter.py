#!/usr/bin/env python3
"""What results reporting costs a prediction: logging a result line with the reporter on, against logging it alone.

usage: python benchmarks/bench_reporter.py [--lines N]

The prediction's thread only formats its log line and appends it to the reporter's queue; the POSTs run on the
reporter's thread. Measured: CPU time of the logging thread per result line (``time.thread_time``) with the
reporter on (sending to a loopback HTTP receiver, and with the receiver down) and off, and the ratio.
Target: ≤ 1.5× the line alone on the logging thread. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from allora_runtime.log import JsonLog  # noqa: E402
from allora_runtime.reporter import ResultReporter  # noqa: E402

TARGET = 1.5


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _emit_lines(log: JsonLog, lines: int) -> float:
    """Seconds of this thread's CPU per result line."""
    started = time.thread_time()
    for nonce in range(lines):
        log.emit("prediction", nonce=nonce, value=nonce / 1000, latency_ms=1.234)
    return (time.thread_time() - started) / lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        token = Path(tmp) / "token"
        token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        figures = {"lines": args.lines}
        figures["off_us"] = _emit_lines(JsonLog(devnull), args.lines) * 1e6
        for label, url in (("on_us", f"http://127.0.0.1:{server.server_address[1]}/r"), ("down_us", f"http://127.0.0.1:{closed_port}/r")):
            log = JsonLog(devnull)
            reporter = ResultReporter(url, str(token), log, limit=args.lines * 2, backoff=0.05).start()
            log.results_tap = reporter.offer
            figures[label] = _emit_lines(log, args.lines) * 1e6
            figures[label.replace("_us", "_stats")] = reporter.close(2.0)
        server.shutdown()
    figures["ratio_on"] = figures["on_us"] / figures["off_us"]
    figures["ratio_down"] = figures["down_us"] / figures["off_us"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0 if max(figures["ratio_on"], figures["ratio_down"]) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
