"""The runtime's results reporter against a real HTTP receiver on loopback: delivery, outages, drops, the token."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from allora_gitops.db.results import deployment_result_summary, record_results
from allora_gitops.errors import ResultsError
from allora_gitops.result_log import report_rows, result_row
from allora_runtime.log import JsonLog
from allora_runtime.reporter import ResultReporter
from tests.test_db_records import bundle_args, deployment_args
from tests.test_results import percentile_cont
from tests.fixtures.runtime import EXIT_INVALID_PREDICTION, EXIT_OK, RunningBootstrap, bootstrap_env, free_port, make_bundle, run_bootstrap

# Shaped like a projected ServiceAccount token (header.payload.signature); the reporter never parses it.
TOKEN_1 = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJhdWQiOlsiYWxsb3JhLXBsYXRmb3JtIl19.c2lnbmF0dXJlLW9uZQ"
TOKEN_2 = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJhdWQiOlsiYWxsb3JhLXBsYXRmb3JtIl19.c2lnbmF0dXJlLXR3bw"

FAILS_EVERY_FIFTH = (
    "def run(nonce):\n"
    "    if nonce % 5 == 0:\n"
    "        raise ValueError(f'no data for {nonce}')\n"
    "    return nonce / 1000\n"
)


class Receiver:
    """A results endpoint: records each POST (its Authorization header and results); ``status`` is what it answers."""

    def __init__(self, port: int = 0, status: int = 200):
        self.requests: list[tuple[str, list[dict]]] = []
        self.status = status
        self.answer = lambda results: b""  # the body of each answer, from the results it carries
        self.attempts = 0  # POSTs received, answered with any status
        self.lock = threading.Lock()
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                results = json.loads(body)["results"]
                with receiver.lock:
                    receiver.attempts += 1
                    if receiver.status == 200:
                        receiver.requests.append((self.headers.get("Authorization", ""), results))
                    answer = receiver.answer(results)
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: the reporter's connections are refused until ``up`` binds the same port again."""
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/results"

    def results(self) -> list[dict]:
        with self.lock:
            return [r for _, batch in self.requests for r in batch]

    def tokens(self) -> list[str]:
        with self.lock:
            return [auth for auth, _ in self.requests]


def events(running: RunningBootstrap, name: str) -> list[dict]:
    return [e for e in running.events if e["event"] == name]


def one(running: RunningBootstrap, name: str) -> dict:
    found = events(running, name)
    assert len(found) == 1, (name, "".join(running.lines))
    return found[0]


def reporting_env(receiver: Receiver, token_file: Path, **extra: str) -> dict[str, str]:
    return bootstrap_env(ALLORA_RESULTS_URL=receiver.url, ALLORA_RESULTS_TOKEN_FILE=str(token_file), **extra)


def write_token(path: Path, token: str) -> None:
    """As the kubelet does: a new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token)
    tmp.replace(path)


def test_twenty_windows_are_delivered_once_each_with_the_fields_of_their_log_lines(tmp_path, records):
    bundle = make_bundle(tmp_path / "b", FAILS_EVERY_FIFTH)
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    receiver = Receiver()
    try:
        running = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--count", "20", "--interval", "0.1",
                                   env=reporting_env(receiver, token_file))  # fmt: skip
        running.wait_for(lambda ev: sum(e["event"].startswith("prediction") for e in ev) >= 6)
        deadline = time.monotonic() + 30
        while not receiver.results() and time.monotonic() < deadline:
            time.sleep(0.05)
        write_token(token_file, TOKEN_2)  # the kubelet rotated it: later sends must carry the new one
        code = running.proc.wait(timeout=60)
        running._reader.join(timeout=5)
        err = running.stderr()
    finally:
        running.kill()
        receiver.down()
    assert code == EXIT_INVALID_PREDICTION  # 4 refusals in the 20 windows
    logged = [e for e in running.events if e["event"] in ("prediction", "prediction_refused")]
    received = receiver.results()
    assert len(logged) == 20
    assert sorted(r["nonce"] for r in received) == list(range(1, 21))  # each once: no loss, no duplicate
    assert sorted(received, key=lambda r: r["nonce"]) == sorted(logged, key=lambda e: e["nonce"])  # the log's own objects
    rows = [result_row(r) for r in received]
    assert sum(r.status == "success" for r in rows) == 16
    errors = [r for r in rows if r.status == "error"]
    assert sorted(r.nonce for r in errors) == [5, 10, 15, 20]
    assert {(r.error_type, r.reason) for r in errors} == {("ValueError", "exception")}
    assert errors[0].error_message == "no data for 5" and "runner.py" in (errors[0].error_where or "")
    assert all(r.latency_ms is not None for r in rows)
    tokens = receiver.tokens()
    assert tokens[0] == f"Bearer {TOKEN_1}" and tokens[-1] == f"Bearer {TOKEN_2}"
    assert set(tokens) == {f"Bearer {TOKEN_1}", f"Bearer {TOKEN_2}"}
    stopped = one(running, "results_reporter_stopped")
    assert (stopped["sent"], stopped["dropped"], stopped["pending"]) == (20, 0, 0)
    output = "".join(running.lines) + err
    assert TOKEN_1 not in output and TOKEN_2 not in output
    assert "signature" not in output  # not even the token's last part

    # What the API does with each POST body: read it as results and record them, idempotently.
    deployment = records.create_deployment(**deployment_args(records.register_bundle(**bundle_args()).id))
    bodies = [{"results": batch} for _, batch in receiver.requests]
    stored = [record_results(records.connection, deployment.id, report_rows(body).rows) for body in bodies]
    assert sum(stored) == 20
    assert sum(record_results(records.connection, deployment.id, report_rows(body).rows) for body in bodies) == 0  # sent again
    stats = deployment_result_summary(records.connection, deployment.id).window("1h", "prediction")
    assert (stats.total, stats.success, stats.error, stats.success_rate) == (20, 16, 4, 0.8)
    latencies = [e["latency_ms"] for e in logged]
    assert stats.latency_ms == {f"p{round(q * 100)}": round(percentile_cont(latencies, q), 3) for q in (0.5, 0.95, 0.99)}


def test_a_report_names_each_malformed_result_and_keeps_the_others():
    good = {"ts": "2026-01-31T12:00:00.000Z", "event": "prediction", "nonce": 1, "value": 0.5, "latency_ms": 3.2}
    reading = report_rows({"results": [good, {"event": "submission_failed", "error_type": "OSError"}]})
    assert [(r.kind, r.nonce, r.status, r.value) for r in reading.rows] == [("prediction", 1, "success", "0.5")]
    assert (reading.unattributed, reading.refused) == (1, [])
    reading = report_rows({"results": [good, {**good, "nonce": "7"}, {"event": "heartbeat"}]})
    assert [r.nonce for r in reading.rows] == [1]
    assert [n.to_dict() for n in reading.refused] == [
        {"index": 1, "nonce": None, "message": "nonce must be a whole number, not '7'"},
        {"index": 2, "nonce": None, "message": "not a result event (prediction, prediction_refused, submission, submission_failed)"},
    ]
    with pytest.raises(ResultsError, match=r'^the body must be a JSON object \{"results": \[...\]\}$'):
        report_rows([good])


def test_an_outage_keeps_the_pace_delivers_the_backlog_once_and_counts_the_oldest_dropped(tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return nonce / 1000\n")
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    receiver = Receiver()
    metrics_port = free_port()
    interval = 0.05
    env = reporting_env(
        receiver, token_file, ALLORA_RESULTS_QUEUE_LIMIT="15", ALLORA_RESULTS_RETRY_BACKOFF="0.05",
        ALLORA_METRICS_PORT=str(metrics_port), ALLORA_METRICS_ADDRESS="127.0.0.1",
    )  # fmt: skip
    running = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", str(interval), env=env)
    try:
        running.wait_for(lambda ev: len(receiver.results()) >= 5)
        receiver.down()
        down_after = running.count("prediction")
        running.wait_for(lambda ev: running.count("prediction") >= down_after + 40)  # 40 windows while down: > 15
        running.wait_for(lambda ev: running.count("results_send_failed") >= 2)
        receiver.up()
        up_after = running.count("prediction")
        running.wait_for(lambda ev: running.count("results_send_recovered") >= 1)
        running.wait_for(lambda ev: any(r["nonce"] > up_after + 10 for r in receiver.results()))
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        code, _ = running.stop(signal.SIGTERM)
        err = running.stderr()
    finally:
        running.kill()
        receiver.down()
    assert code == EXIT_OK
    predicted = [e["nonce"] for e in events(running, "prediction")]
    received = [r["nonce"] for r in receiver.results()]
    assert len(received) == len(set(received))  # no duplicates
    missing = sorted(set(predicted) - set(received))
    assert missing, "the bound of 15 was hit: some results must have been dropped"
    # the dropped are the oldest of the backlog, one run of nonces from the outage; the 15 after them were kept
    assert missing == list(range(missing[0], missing[-1] + 1)) and missing[0] > down_after - 15
    assert set(range(missing[-1] + 1, missing[-1] + 16)) <= set(received)
    stopped = one(running, "results_reporter_stopped")
    assert stopped["dropped"] == len(missing) and stopped["pending"] == 0 and stopped["sent"] == len(received)
    dropped_metric = next(line for line in scraped.splitlines() if line.startswith('allora_results_dropped_total{reason="queue_full"}'))
    assert float(dropped_metric.rsplit(" ", 1)[1]) == len(missing)  # scraped before the stop; nothing dropped since
    # the runtime kept its pace while the receiver was down: no window waited on the reporter
    times = [e["ts"] for e in events(running, "prediction")]
    stamps = [time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float(t[19:-1] or 0) for t in times]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) < interval + 1.0
    output = "".join(running.lines) + err
    assert TOKEN_1 not in output


def test_a_missing_token_file_is_retried_and_named_without_any_token(tmp_path):
    receiver = Receiver()
    token_file = tmp_path / "token"
    log_path = tmp_path / "log"
    with log_path.open("w") as stream:
        reporter = ResultReporter(receiver.url, str(token_file), JsonLog(stream), limit=10, backoff=0.05).start()
        reporter.offer(json.dumps({"event": "prediction", "nonce": 1, "value": "0.1"}))
        time.sleep(0.3)
        assert receiver.results() == []
        write_token(token_file, TOKEN_1)
        stats = reporter.close(5.0)
    receiver.down()
    assert stats == {"sent": 1, "dropped": 0, "pending": 0}
    assert [r["nonce"] for r in receiver.results()] == [1]
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines[0]["event"] == "results_send_failed"
    assert lines[0]["error"] == f"cannot read the token file {token_file} (FileNotFoundError)"


def test_a_batch_the_api_refuses_as_malformed_is_dropped_not_retried(tmp_path):
    receiver = Receiver(status=422)
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    dropped: list[tuple[str, int]] = []
    log_path = tmp_path / "log"
    with log_path.open("w") as stream:
        reporter = ResultReporter(
            receiver.url, str(token_file), JsonLog(stream), limit=10, backoff=0.05, on_drop=lambda r, n: dropped.append((r, n))
        ).start()
        reporter.offer(json.dumps({"event": "prediction", "nonce": 1, "value": "0.1"}))
        deadline = time.monotonic() + 10
        while not dropped and time.monotonic() < deadline:
            time.sleep(0.02)
        receiver.status = 200
        reporter.offer(json.dumps({"event": "prediction", "nonce": 2, "value": "0.2"}))
        stats = reporter.close(5.0)
    receiver.down()
    assert dropped == [("rejected", 1)]
    assert stats == {"sent": 1, "dropped": 1, "pending": 0}
    assert [r["nonce"] for r in receiver.results()] == [2]
    events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()]
    assert events == ["results_rejected"]


def test_a_redirect_is_a_failed_send_and_the_token_never_reaches_the_other_host(tmp_path):
    # An ingress answering 302 (http -> elsewhere): followed, urllib would GET the other host
    # without the body, with the bearer token, and the batch would count as sent.
    elsewhere: list[tuple[str, str]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            elsewhere.append((self.command, self.headers.get("Authorization", "")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    target = f"http://localhost:{other.server_address[1]}/collect?sig=abc"

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    front = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    log_path = tmp_path / "log"
    try:
        with log_path.open("w") as stream:
            url = f"http://127.0.0.1:{front.server_address[1]}/api/v1/results"
            reporter = ResultReporter(url, str(token_file), JsonLog(stream), limit=10, backoff=0.05).start()
            reporter.offer(json.dumps({"event": "prediction", "nonce": 1, "value": "0.1"}))
            time.sleep(0.3)
            stats = reporter.close(0.2)
    finally:
        front.shutdown(), front.server_close(), other.shutdown(), other.server_close()
    assert elsewhere == []
    assert stats == {"sent": 0, "dropped": 0, "pending": 1}
    first = json.loads(log_path.read_text().splitlines()[0])
    assert first["event"] == "results_send_failed"
    assert first["error"] == (
        f"HTTP 302: redirect to http://localhost:{other.server_address[1]}/collect?[redacted] not followed;"
        " set ALLORA_RESULTS_URL to the final URL"
    )


def test_shutdown_gives_up_within_its_bound_when_the_api_stays_down(tmp_path):
    port = free_port()  # nothing listens here
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    with (tmp_path / "log").open("w") as stream:
        reporter = ResultReporter(f"http://127.0.0.1:{port}/api/v1/results", str(token_file), JsonLog(stream), limit=10, backoff=0.05).start()
        for nonce in range(3):
            reporter.offer(json.dumps({"event": "prediction", "nonce": nonce, "value": "0.1"}))
        started = time.monotonic()
        stats = reporter.close(0.5)
        took = time.monotonic() - started
    assert stats == {"sent": 0, "dropped": 0, "pending": 3}
    assert took < 5  # bounded: the pod's grace period is not spent waiting on the API


def test_a_url_that_is_not_http_is_a_configuration_error(tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n")
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=bootstrap_env(ALLORA_RESULTS_URL="ftp://platform/api"))
    assert result.code == 3
    assert result.one("config_error")["message"] == "ALLORA_RESULTS_URL must be an http:// or https:// URL, got 'ftp://platform/api'"


def test_without_a_results_url_nothing_is_reported(tmp_path):
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return 1.0\n")
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1")
    assert result.code == EXIT_OK
    assert not result.of("results_reporting") and not result.of("results_reporter_stopped")
    assert result.one("config")["results_url"] is None


def test_submission_lines_carry_what_the_results_reader_needs_nonce_included():
    """live.py's submission events, through a JSON line, read back by result_log as the right rows."""
    from types import SimpleNamespace as NS

    from allora_runtime.live import submission_event

    def row(result, nonce):
        event, fields = submission_event(result, nonce)
        fields.pop("fee_uallo", None)
        return result_row(json.loads(json.dumps({"ts": "2026-01-31T12:00:00.000Z", "level": "info", "event": event, **fields})))

    tx = NS(txhash="ab" * 32, code=0, gas_used=81234, events=[NS(type="tx", attributes=[NS(key="fee", value="2500uallo")])])
    ok = row(NS(submission=0.25, tx_result=tx), 7)
    assert (ok.kind, ok.nonce, ok.status, ok.value, ok.tx_hash, ok.gas_used, ok.fee) == (
        "submission", 7, "success", "0.25", "AB" * 32, 81234, "2500uallo",
    )  # fmt: skip
    rejected = row(NS(submission=0.25, tx_result=NS(txhash="cd" * 32, code=13, gas_used=0, events=[])), 8)
    assert (rejected.nonce, rejected.status, rejected.reason, rejected.gas_used, rejected.fee) == (8, "error", "tx_failed", None, None)
    failed = row(TimeoutError("no block within 30 s"), 9)
    assert (failed.nonce, failed.status, failed.reason, failed.error_type, failed.error_message) == (
        9, "error", "submit_failed", "TimeoutError", "no block within 30 s",
    )  # fmt: skip


def test_batches_stay_under_the_apis_body_limit_with_long_error_messages(tmp_path):
    """100 results with 3,000-character messages would be ~300 KB: the API refuses JSON bodies over 64 KiB
    (413, dropped as rejected), so a batch is cut by bytes as well as by count — and nothing is lost."""
    from allora_gitops.api.app import MAX_REQUEST_BODY
    from allora_runtime.contract import RESULTS_BATCH_BYTES

    assert RESULTS_BATCH_BYTES < MAX_REQUEST_BODY - 1024  # room for the {"results": [...]} wrapping
    receiver = Receiver()
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    with (tmp_path / "log").open("w") as stream:
        reporter = ResultReporter(receiver.url, str(token_file), JsonLog(stream), limit=1000, backoff=0.05)
        for nonce in range(100):  # queued before the thread starts: it sees them all at once
            reporter.offer(json.dumps({"event": "prediction_failed", "nonce": nonce, "reason": "exception", "message": "x" * 3000}))
        reporter.start()
        stats = reporter.close(10.0)
    receiver.down()
    assert stats == {"sent": 100, "dropped": 0, "pending": 0}
    sizes = [len(json.dumps({"results": batch})) for _, batch in receiver.requests]
    assert len(sizes) > 1 and max(sizes) < MAX_REQUEST_BODY, sizes
    assert sorted(r["nonce"] for r in receiver.results()) == list(range(100))


def _reporter(receiver: Receiver, tmp_path: Path, stream, dropped: list, **kwargs) -> ResultReporter:
    token_file = tmp_path / "token"
    write_token(token_file, TOKEN_1)
    return ResultReporter(
        receiver.url, str(token_file), JsonLog(stream), limit=10, backoff=0.05, on_drop=lambda r, n: dropped.append((r, n)), **kwargs
    )


def _wait(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("status", [404, 405, 409, 415])
def test_any_4xx_but_the_retried_ones_drops_the_batch_instead_of_blocking_the_queue(tmp_path, status):
    receiver = Receiver(status=status)
    receiver.answer = lambda results: json.dumps({"status": status, "detail": "no such route"}).encode()
    dropped: list = []
    with (tmp_path / "log").open("w") as stream:
        reporter = _reporter(receiver, tmp_path, stream, dropped).start()
        reporter.offer(json.dumps({"event": "prediction", "nonce": 1, "value": "0.1"}))
        _wait(lambda: dropped)
        receiver.status = 200
        reporter.offer(json.dumps({"event": "prediction", "nonce": 2, "value": "0.2"}))
        stats = reporter.close(5.0)
    receiver.down()
    assert (dropped, stats, receiver.attempts) == ([("rejected", 1)], {"sent": 1, "dropped": 1, "pending": 0}, 2)
    assert [r["nonce"] for r in receiver.results()] == [2]
    [line] = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert (line["event"], line["error"]) == ("results_rejected", f"HTTP {status}: no such route")


@pytest.mark.parametrize("status", [401, 403, 408, 429, 503])
def test_a_rotating_token_a_timeout_a_rate_limit_and_a_5xx_are_retried(tmp_path, status):
    receiver = Receiver(status=status)
    dropped: list = []
    with (tmp_path / "log").open("w") as stream:
        reporter = _reporter(receiver, tmp_path, stream, dropped).start()
        reporter.offer(json.dumps({"event": "prediction", "nonce": 1, "value": "0.1"}))
        _wait(lambda: receiver.attempts >= 2)
        receiver.status = 200
        stats = reporter.close(5.0)
    receiver.down()
    assert (dropped, stats) == ([], {"sent": 1, "dropped": 0, "pending": 0})
    assert [r["nonce"] for r in receiver.results()] == [1]


def test_results_the_api_refuses_one_by_one_are_counted_and_logged_once_per_batch(tmp_path):
    receiver = Receiver()
    receiver.answer = lambda results: json.dumps({
        "stored": 0, "refused": [{"index": i, "nonce": r["nonce"], "message": "ts is out of range"} for i, r in enumerate(results) if r["nonce"] % 2],
    }).encode()  # fmt: skip
    dropped: list = []
    with (tmp_path / "log").open("w") as stream:
        reporter = _reporter(receiver, tmp_path, stream, dropped)
        for nonce in range(1, 11):  # queued before the thread starts: one batch
            reporter.offer(json.dumps({"event": "prediction", "nonce": nonce, "value": "0.1"}))
        reporter.start()
        stats = reporter.close(5.0)
    receiver.down()
    assert dropped == [("refused", 5)]
    assert stats == {"sent": 5, "dropped": 5, "pending": 0}
    [line] = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert (line["event"], line["results"], line["of"]) == ("results_refused", 5, 10)
    assert line["first"] == [{"nonce": n, "message": "ts is out of range"} for n in (1, 3, 5)]


def test_offer_never_raises_and_a_line_too_large_for_any_batch_is_dropped_at_once(tmp_path):
    from allora_runtime.contract import RESULTS_BATCH_BYTES

    receiver = Receiver()
    dropped: list = []
    with (tmp_path / "log").open("w") as stream:
        reporter = _reporter(receiver, tmp_path, stream, dropped).start()
        reporter.offer('{"event": "prediction_refused", "nonce": 1, "reason": "exception", "message": "caf\udce9"}')
        reporter.offer(json.dumps({"event": "prediction_refused", "nonce": 2, "message": "m" * RESULTS_BATCH_BYTES}))
        reporter.offer(json.dumps({"event": "prediction", "nonce": 3, "value": "0.3"}))
        stats = reporter.close(5.0)
    receiver.down()
    assert dropped == [("rejected", 1)] and stats == {"sent": 2, "dropped": 1, "pending": 0}
    assert [(r["nonce"], r.get("message")) for r in receiver.results()] == [(1, "caf?"), (3, None)]


def test_bundle_run_shows_that_results_could_not_be_sent(cli, tmp_path, monkeypatch):
    """``allora-bundle run`` with ALLORA_RESULTS_URL set: each failed send and what was never delivered are warnings,
    and ``--json`` carries the counts; nothing listens on the port."""
    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return nonce / 1000\n")
    write_token(tmp_path / "token", TOKEN_1)
    monkeypatch.setenv("ALLORA_RESULTS_URL", f"http://127.0.0.1:{free_port()}/api/v1/results")
    monkeypatch.setenv("ALLORA_RESULTS_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("ALLORA_RESULTS_RETRY_BACKOFF", "0.2")
    result = cli("bundle", "run", bundle, "--here", "-n", "1", "-n", "2")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: results:")]
    assert warnings[0] == "warning: results: sending to ALLORA_RESULTS_URL failed (attempt 1): URLError: [Errno 111] Connection refused"
    assert warnings[-1] == "warning: results: 2 of 2 result(s) were not delivered to ALLORA_RESULTS_URL"
    assert TOKEN_1 not in result.out + result.err
    as_json = cli("bundle", "run", bundle, "--here", "-n", "1", "--json")
    doc = json.loads(as_json.out)
    assert doc["reporting"]["sent"] == 0 and doc["reporting"]["pending"] + doc["reporting"]["dropped"] == 1
    assert doc["reporting"]["warnings"][-1] == "results: 1 of 1 result(s) were not delivered to ALLORA_RESULTS_URL"


def test_a_relative_token_file_is_read_where_the_runtime_started_not_in_the_bundles_workdir(tmp_path):
    receiver = Receiver()
    start = tmp_path / "start"
    start.mkdir()
    write_token(start / "token", TOKEN_1)
    bundle = make_bundle(tmp_path / "b", FAILS_EVERY_FIFTH)
    (bundle / "token").write_text(TOKEN_2)  # the file the old runtime read after changing directory
    env = bootstrap_env(ALLORA_RESULTS_URL=receiver.url, ALLORA_RESULTS_TOKEN_FILE="token")
    try:
        result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", env=env, cwd=start)
    finally:
        receiver.down()
    assert result.code == EXIT_OK, result.out
    assert result.one("results_reporting")["token_file"] == str(start / "token")
    assert receiver.tokens() == [f"Bearer {TOKEN_1}"]


def test_bundle_run_says_a_result_too_large_to_send_was_dropped_by_the_runtime_not_refused_by_the_api(cli, tmp_path, monkeypatch):
    """A result line larger than any batch is dropped when offered, before any send: the warning must not blame the
    API (which never saw it) and names the window."""
    from allora_runtime.contract import RESULTS_BATCH_BYTES

    bundle = make_bundle(tmp_path / "b", f"def run(nonce):\n    return {{'L' * {RESULTS_BATCH_BYTES}: 1.0}} if nonce == 7 else 0.5\n")
    write_token(tmp_path / "token", TOKEN_1)
    monkeypatch.setenv("ALLORA_RESULTS_URL", f"http://127.0.0.1:{free_port()}/api/v1/results")
    monkeypatch.setenv("ALLORA_RESULTS_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("ALLORA_RESULTS_RETRY_BACKOFF", "0.2")
    result = cli("bundle", "run", bundle, "--here", "-n", "7")
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: results:")]
    assert not any("the API refused" in line for line in warnings), warnings
    [too_large] = [line for line in warnings if "larger than any batch" in line]
    assert too_large.startswith("warning: results: nonce 7: a result line of ")
    assert too_large.endswith(f" bytes is larger than any batch (at most {RESULTS_BATCH_BYTES}): not sent")
