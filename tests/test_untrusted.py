"""Hostile text and values on their way into the records: the normaliser (allora_gitops/untrusted.py) alone, and
each kind end to end — the real runtime (bootstrap.pyz) → the real API (uvicorn) → PostgreSQL, and
``allora-gitops results import``.

Kinds: NUL (PostgreSQL text refuses it), lone surrogates (``os.fsdecode`` of a file name that is not UTF-8),
sizes (a 1 MB message, a 20,000-character prediction), class names that are not ASCII, times that have no UTC
value (``9999-12-31T23:30:00-01:00``) or lie in the future, multipart boundaries over 256 characters, NUL in a URL.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from allora_gitops.untrusted import FUTURE_SKEW, UntrustedValue, ascii_identifier, bound_text, check_time, clean_json, clean_text
from tests.fixtures.runtime import EXIT_INVALID_PREDICTION, RunningBootstrap, bootstrap_env, free_port, make_bundle
from tests.test_api_results import key, platform  # noqa: F401 - fixtures: the API with pod identity configured
from tests.test_podidentity import projected_token
from tests.test_results import NAME, count_rows, deployment  # noqa: F401 - fixture

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


# --- the normaliser -----------------------------------------------------------------------------------------------
def test_nul_and_lone_surrogates_become_the_replacement_character_and_nothing_else_changes():
    assert clean_text("bad\x00byte") == "bad\ufffdbyte"
    assert clean_text(os.fsdecode(b"/data/caf\xe9.csv")) == "/data/caf\ufffd.csv"  # \udce9
    assert clean_text("\ud800 and \udfff") == "\ufffd and \ufffd"
    kept = "naïve 🙂 tab\there\nnewline"  # astral characters are one code point, never a surrogate pair
    assert clean_text(kept) is kept
    assert clean_json({"k\x00": ["v\udcff", 1, None, {"x": "\x00"}]}) == {"k\ufffd": ["v\ufffd", 1, None, {"x": "\ufffd"}]}


def test_long_text_is_cut_to_its_bound_and_says_how_much_was_cut():
    cut = bound_text("x" * 1_000_000, 4000)
    assert len(cut) <= 4000 and cut.startswith("x" * 3900)
    assert cut.endswith(f" … [{1_000_000 - cut.index(' …')} more characters]")
    assert bound_text("short", 4000) == "short"
    cut = bound_text("é" * 1001, 1000)  # the bound is characters, not bytes
    assert len(cut) <= 1000 and cut.endswith("more characters]")


def test_class_names_are_kept_as_ascii_identifiers():
    assert ascii_identifier("ValueError") == "ValueError"
    assert ascii_identifier("requests.exceptions.HTTPError") == "requests.exceptions.HTTPError"
    assert ascii_identifier("DonnéesManquantes") == "DonneesManquantes"
    assert ascii_identifier("Ошибка") == "______"
    assert ascii_identifier("1st-error") == "_1st_error"
    assert ascii_identifier("E" * 500) == "E" * 200


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T23:30:00-01:00",  # overflows on the conversion to UTC (nab PR #947)
        "0001-01-01T00:30:00+01:00",  # underflows
        "2026-01-31T12:00:00",  # no zone
        "31/01/2026 12:00",
        "",
        1769860800,  # a number of seconds, not ISO 8601
    ],
)
def test_a_time_that_has_no_utc_value_is_refused(ts):
    with pytest.raises(UntrustedValue):
        check_time(ts, received_at=NOW)


def test_a_value_the_runtime_would_refuse_is_refused_not_stored_as_a_success():
    """The runtime never reports "NaN", "abc", true, [1] or {} as a prediction (check_prediction refuses them); sent
    to the API (or imported) they were stored as successful predictions and raised the success rate."""
    from allora_gitops.result_log import report_rows

    good = {"ts": "2026-01-31T12:00:00Z", "event": "prediction", "value": 1.5}
    values = ["NaN", "-Infinity", "abc", "", True, [1.0], {}, {"": 1.0}, {"eth": "nan"}, 10**400]
    report = {"results": [{**good, "nonce": n, "value": v} for n, v in enumerate(values)]
              + [{**good, "nonce": 100, "value": "2.5"}, {**good, "nonce": 101, "value": {"eth": "1e3", "btc": 2}},
                 {**good, "event": "submission_failed", "nonce": 102, "value": None, "reason": "prediction_refused"}]}
    reading = report_rows(report, received_at=NOW)
    assert [(note.index, note.nonce) for note in reading.refused] == [(n, n) for n in range(len(values))]
    assert all(note.message.startswith("value: ") for note in reading.refused), reading.refused
    assert reading.refused[0].message == "value: the prediction is the string 'NaN', not a finite decimal number"
    assert reading.refused[4].message == "value: the prediction is a bool (True); return a number"
    assert [(row.nonce, row.value) for row in reading.rows] == [(100, "2.5"), (101, '{"btc":2,"eth":"1e3"}'), (102, None)]


def test_a_time_in_the_future_beyond_the_skew_is_clamped_to_the_receive_time_and_within_it_kept():
    assert check_time("2026-01-31T13:00:00+01:00", received_at=NOW) == (NOW, None)
    within = NOW + FUTURE_SKEW - timedelta(seconds=1)
    assert check_time(within.isoformat(), received_at=NOW) == (within, None)
    at, why = check_time("2026-02-03T12:00:00Z", received_at=NOW)
    assert at == NOW
    assert why == "ts 2026-02-03T12:00:00Z is 3 d ahead of the server's clock (more than 5 min); recorded at the time it was received"
    at, why = check_time("9999-12-31T22:00:00-01:00", received_at=NOW)  # the last hour that exists: far ahead, clamped
    assert at == NOW and why.startswith("ts 9999-12-31T22:00:00-01:00 is ")


# --- the real runtime → the real API → PostgreSQL ---------------------------------------------------------------
HOSTILE_MODEL = """\
import os


class DonnéesManquantes(Exception):
    pass


def run(nonce):
    kind = nonce % 8
    if kind == 2:
        raise ValueError("bad\\x00byte in the input")                   # NUL: PostgreSQL text refuses it
    if kind == 3:
        raise FileNotFoundError(os.fsdecode(b"/data/caf\\xe9.csv"))     # a lone surrogate (\\udce9)
    if kind == 4:
        raise RuntimeError("x" * 1_000_000)                            # a 1 MB message
    if kind == 5:
        return {"label-" + "y" * 20000: 1.0}                           # a prediction the API refuses: too long to store
    if kind == 6:
        raise DonnéesManquantes("pas de données pour \\udcff")           # a class name that is not ASCII
    return nonce / 10
"""


def _stored(records, deployment_id) -> dict[int, tuple]:
    rows = records.connection.execute(
        "SELECT nonce, status, prediction, error_type, error_message FROM submission_results WHERE deployment_id = %s",
        (deployment_id,),
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_a_model_raising_nul_surrogates_and_huge_messages_keeps_predicting_and_only_the_unstorable_result_is_refused(
    platform, key, records, tmp_path  # noqa: F811
):
    """Eight kinds of window in one batch: the token file appears only once all eight were predicted, so the first
    successful POST carries them together. The relative ALLORA_RESULTS_TOKEN_FILE (resolved in the directory
    the runtime starts in, not the bundle's) is the one it reads."""
    server, a, _ = platform
    bundle = make_bundle(tmp_path / "bundle", HOSTILE_MODEL)
    start = tmp_path / "start"
    start.mkdir()
    metrics_port = free_port()
    env = bootstrap_env(
        ALLORA_RESULTS_URL=f"{server.url}/api/v1/results", ALLORA_RESULTS_TOKEN_FILE="token",
        ALLORA_RESULTS_RETRY_BACKOFF="0.05", ALLORA_METRICS_PORT=str(metrics_port),
    )  # fmt: skip
    running = RunningBootstrap(bundle, "--dry-run", "--start-nonce", "1", "--interval", "0.2", env=env, cwd=start)
    try:
        running.wait_for(lambda ev: any(e.get("nonce") == 8 and e["event"].startswith("prediction") for e in ev))
        (start / "token").write_text(projected_token(key, "cluster-key"))
        running.wait_for(lambda ev: any(e["event"] == "results_refused" for e in ev))
        refused = next(e for e in running.events if e["event"] == "results_refused")
        # it goes on predicting, and reporting, after the refusal
        last = refused["of"] + 4
        unstorable = {n for n in range(1, last + 1) if n % 8 == 5}
        running.wait_for(lambda ev: set(range(1, last + 1)) - unstorable <= set(_stored(records, a.id)), timeout=60)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        code, _ = running.stop(signal.SIGTERM)
    finally:
        running.kill()
    assert code == 0, "".join(running.lines)
    reporting = next(e for e in running.events if e["event"] == "results_reporting")
    assert reporting["token_file"] == str(start / "token")
    # the first batch held every window up to when the token appeared, 8 or more, the refused among them
    in_first = {n for n in unstorable if n <= refused["of"]}
    assert refused["of"] >= 8 and refused["results"] == len(in_first)
    assert refused["first"] == [{"nonce": n, "message": "value must be text of 1 to 10000 characters"} for n in sorted(in_first)][:3]
    stored = _stored(records, a.id)
    assert not unstorable & set(stored)  # every window but those with the too-long value
    assert stored[1] == ("success", "0.1", None, None)
    assert stored[2] == ("error", None, "ValueError", "bad\ufffdbyte in the input")
    assert stored[3] == ("error", None, "FileNotFoundError", "/data/caf\ufffd.csv")
    status, _, error_type, message = stored[4]
    assert (status, error_type) == ("error", "RuntimeError") and message.startswith("xxx") and len(message) <= 4000
    assert stored[6] == ("error", None, "DonneesManquantes", "pas de données pour \ufffd")
    line = next(x for x in scraped.splitlines() if x.startswith('allora_results_dropped_total{reason="refused"}'))
    assert float(line.rsplit(" ", 1)[1]) >= len(unstorable)  # scraped a little later: maybe one more since
    log = "".join(running.lines)
    assert log.count('"event": "results_rejected"') == 0  # no whole batch was lost


def test_a_batch_of_hostile_values_stores_the_good_results_and_names_each_refused_one(platform, key, records):  # noqa: F811
    """Straight to the API, as any client may send it (JSON escapes for what the runtime would have cleaned)."""
    server, a, _ = platform
    now = datetime.now(timezone.utc)
    ok = {"ts": now.isoformat(), "event": "prediction", "value": 0.5, "latency_ms": 2.0}
    refused = {"event": "prediction_refused", "reason": "exception", "latency_ms": 1.0}
    batch = [
        {**ok, "nonce": 1},
        {**refused, "ts": now.isoformat(), "nonce": 2, "error_type": "ValueError", "message": "nul \x00 inside"},
        {**refused, "ts": now.isoformat(), "nonce": 3, "error_type": "OSError", "message": "lone \ud800 surrogate", "where": "/src/\udce9.py:3"},
        {**refused, "ts": now.isoformat(), "nonce": 4, "error_type": "RuntimeError", "message": "m" * 20_000},
        {**ok, "nonce": 5, "ts": "9999-12-31T23:30:00-01:00"},
        {**ok, "nonce": 6, "ts": "0001-01-01T00:30:00+01:00"},
        {**ok, "nonce": 7, "ts": "2099-06-01T00:00:00Z"},
        {**ok, "nonce": 8, "ts": (now + timedelta(seconds=60)).isoformat()},
        {**ok, "nonce": 9, "value": "1" + "0" * 10_001},  # 10,002 characters: the prediction itself, never cut
        {**ok, "nonce": 10, "value": {"eth\x00": 1.0, "b\udcff": 2.0}},
        {**ok, "nonce": 11, "tx_hash": "\x00" * 64, "event": "submission"},
        {**ok, "nonce": 12, "ts": "2026-01-31 12:00:00"},
        {**refused, "ts": now.isoformat(), "nonce": 13, "error_type": "Ошибка", "message": "x"},
        # a class name that is a wallet key: never redacted (it is a name), so the database's CHECK refuses it
        {**refused, "ts": now.isoformat(), "nonce": 14, "error_type": "Key" + "1f" * 32, "message": "x"},
    ]
    body = json.dumps({"results": batch})  # json.dumps writes \u0000 and \ud800 escapes: what a client sends
    assert len(body) < 64 << 10
    answer = httpx.post(
        f"{server.url}/api/v1/results", content=body, timeout=30,
        headers={"Authorization": f"Bearer {projected_token(key, 'cluster-key')}", "Content-Type": "application/json"},
    )  # fmt: skip
    after = datetime.now(timezone.utc)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert {r["nonce"]: r["message"] for r in doc["refused"]} == {
        5: "ts '9999-12-31T23:30:00-01:00' is out of range: it has no UTC time between years 1 and 9999",
        6: "ts '0001-01-01T00:30:00+01:00' is out of range: it has no UTC time between years 1 and 9999",
        9: "value must be text of 1 to 10000 characters",
        11: "tx_hash must be 64 upper-case hex digits, not '" + "\ufffd" * 64 + "'",
        12: "ts must carry a timezone (e.g. 2026-01-31T12:00:00Z), not '2026-01-31 12:00:00'",
        14: "error_type looks like it may hold a wallet secret (a 64-digit hex run, or 12 words); it is not stored",
    }
    assert [r["index"] for r in doc["refused"]] == [4, 5, 8, 10, 11, 13]
    [adjusted] = doc["adjusted"]
    assert adjusted["nonce"] == 7 and adjusted["message"].startswith("ts 2099-06-01T00:00:00Z is ")
    assert (doc["received"], doc["stored"], doc["already_recorded"]) == (14, 8, 0)
    assert "1f" * 32 not in answer.text + server.log.read_text()  # the refusal does not echo the key

    rows = {
        r[0]: r[1:] for r in records.connection.execute(
            "SELECT nonce, created_at, prediction, error_type, error_message, error_where FROM submission_results WHERE deployment_id = %s",
            (a.id,),
        ).fetchall()
    }  # fmt: skip
    assert sorted(rows) == [1, 2, 3, 4, 7, 8, 10, 13]
    assert rows[2][3] == "nul \ufffd inside"
    assert rows[3][3:] == ("lone \ufffd surrogate", "/src/\ufffd.py:3")
    assert len(rows[4][3]) <= 4000 and rows[4][3].endswith("more characters]")
    assert now - timedelta(seconds=1) <= rows[7][0] <= after  # clamped to when it was received: shown at once
    assert rows[8][0] > after  # within the skew: kept as sent
    assert json.loads(rows[10][1]) == {"eth\ufffd": 1.0, "b\ufffd": 2.0}
    assert rows[13][2] == "______"
    # the clamped one is in the last hour's window; nothing reported is hidden in the future beyond the skew
    from allora_gitops.db.results import deployment_result_summary

    [hour] = [w for w in deployment_result_summary(records.connection, a.id).windows if w.window == "1h"]
    assert hour.total == 7  # all stored but nonce 8, which is still a minute ahead


# --- results import ---------------------------------------------------------------------------------------------
def test_import_names_every_refused_line_nul_lines_included_and_imports_nothing(cli, database_url, deployment, records, tmp_path):  # noqa: F811
    good = {"ts": "2026-01-31T12:00:00.000Z", "level": "info", "event": "prediction", "nonce": 1, "value": 1.5}
    lines = [
        json.dumps(good).encode(),
        b'{"ts": "2026-01-31T12:00:00.000Z", "event": "prediction",\x00 "nonce": 2, "value": 1}',  # a NUL byte in the line
        b'{"ts": "2026-01-31T12:00:00.000Z", "event": "prediction_refused", "nonce": 3, "message": "a\x00b"}',  # raw NUL in a string
        json.dumps({**good, "nonce": 4, "ts": "9999-12-31T23:30:00-01:00"}).encode(),
        json.dumps({**good, "nonce": 5, "event": "prediction_refused", "reason": "Not A Reason", "message": "m"}).encode(),
        b'{"ts": "2026-01-31T12:00:00.000Z", "event": "submission", "nonce": 6, "value": 1, "tx_',  # cut short
        json.dumps({"event": "start", "mode": "dry_run"}).encode(),
        b"\x00\x00\x00\x00",  # the padding a truncated log file shows: noise, not a result
        json.dumps({**good, "nonce": 7, "ts": "0001-01-01T00:00:00+00:01"}).encode(),
        json.dumps({**good, "nonce": 8, "event": "prediction_refused", "error_type": "Key" + "1f" * 32, "message": "m"}).encode(),
    ]
    path = tmp_path / "bad.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert result.code == 1
    not_json = "a result line that is not valid JSON (cut short, or holding a control character such as NUL)"
    assert result.lines == [
        f"error: {path}: 7 malformed result line(s); nothing was imported",
        f"{path}:2: error: {not_json}",
        f"{path}:3: error: {not_json}",
        f"{path}:4: error: prediction line: ts '9999-12-31T23:30:00-01:00' is out of range: it has no UTC time between years 1 and 9999",
        f"{path}:5: error: prediction_refused line: reason must be lower-case letters, digits and _ (e.g. timeout), not 'Not A Reason'",
        f"{path}:6: error: {not_json}",
        f"{path}:9: error: prediction line: ts '0001-01-01T00:00:00+00:01' is out of range: it has no UTC time between years 1 and 9999",
        f"{path}:10: error: prediction_refused line: error_type looks like it may hold a wallet secret (a 64-digit hex run, or 12 words);"
        " it is not stored",
    ]
    assert "Traceback" not in result.err and "0x00" not in result.err
    assert count_rows(records) == 0


def test_import_stores_escaped_nul_surrogates_bad_bytes_and_future_times_as_the_api_does(cli, database_url, deployment, records, tmp_path):  # noqa: F811
    """What the issue saw: a line with a NUL (``\\u0000`` in JSON) made the import fail with
    "invalid byte sequence 0x00" and no line. Now it is stored, cleaned, with everything beside it."""
    base = {"ts": "2026-01-31T12:00:00.000Z", "level": "error", "event": "prediction_refused", "reason": "exception"}
    lines = [
        json.dumps({**base, "nonce": 1, "error_type": "ValueError", "message": "nul \x00 here"}).encode(),
        json.dumps({**base, "nonce": 2, "error_type": "OSError", "message": "surrogate \udce9 here"}).encode(),
        json.dumps({**base, "nonce": 3, "error_type": "OSError", "message": "bad byte "})[:-2].encode() + b'\xff"}',  # not UTF-8
        json.dumps({**base, "nonce": 4, "error_type": "DonnéesManquantes", "message": "é" * 9000}, ensure_ascii=False).encode(),
        json.dumps({**base, "nonce": 5, "event": "prediction", "value": 2.5, "ts": "2099-01-01T00:00:00Z"}).encode(),
    ]
    path = tmp_path / "hostile.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = datetime.now(timezone.utc)
    result = cli("gitops", "results", "import", path, "--name", NAME, "--database-url", database_url)
    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"{path}: imported 5 new result(s) for {NAME} on testnet (0 already recorded) from 5 line(s); skipped 0 line(s) that"
        " are not result events; 1 result(s) dated in the future were recorded at the import's time"
    )
    rows = {
        r[0]: r[1:] for r in records.connection.execute(
            "SELECT nonce, created_at, error_type, error_message FROM submission_results WHERE deployment_id = %s", (deployment.id,)
        ).fetchall()
    }  # fmt: skip
    assert rows[1][2] == "nul \ufffd here" and rows[2][2] == "surrogate \ufffd here" and rows[3][2] == "bad byte \ufffd"
    assert rows[4][1] == "DonneesManquantes" and len(rows[4][2]) <= 4000 and rows[4][2].endswith("more characters]")
    assert before <= rows[5][0] <= datetime.now(timezone.utc)


def test_import_from_stdin_reads_bytes_that_are_not_utf8_as_a_file_is_read(database_url, deployment, records):  # noqa: F811
    import subprocess
    import sys

    from tests.conftest import cli_env

    line = b'{"ts": "2026-01-31T12:00:00Z", "event": "prediction_refused", "nonce": 1, "reason": "exception", "message": "caf\xe9"}\n'
    proc = subprocess.run(
        [sys.executable, "-m", "allora_gitops.cli.gitops", "results", "import", "-", "--name", NAME, "--database-url", database_url],
        input=line, capture_output=True, env=cli_env(None), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert records.connection.execute("SELECT error_message FROM submission_results").fetchone() == ("caf\ufffd",)


# --- every input error is a 4xx problem -------------------------------------------------------------------------
def test_a_multipart_boundary_over_256_characters_and_a_nul_in_the_url_are_4xx_problems(platform, key):  # noqa: F811
    server, _, _ = platform
    token = server.token("alice")
    boundary = "b" * 300
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"x.tar.gz\"\r\n\r\nxx\r\n--{boundary}--\r\n"
    answer = httpx.post(
        f"{server.url}/api/bundles", content=body.encode(), timeout=30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    assert (answer.status_code, answer.headers["content-type"]) == (400, "application/problem+json"), answer.text
    assert answer.json()["detail"] == "the multipart body is malformed: Boundary length 300 exceeds maximum of 256"
    for url in (f"{server.url}/api/deployments/a%00b", f"{server.url}/api/deployments?name=a%00b", f"{server.url}/deployments/x%00"):
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert (answer.status_code, answer.json()["detail"]) == (400, "the URL holds a NUL character (%00)"), url
    # a body that is not UTF-8, or JSON nested deeper than the parser goes: the same 422 as any JSON the reader refuses,
    # saying why (FastAPI's bare 400 "There was an error parsing the body" said nothing a client could act on)
    for content, why in (
        (b'{"results": [\xff\xfe]}', "not UTF-8 at byte 13"),
        (b'{"results": ' + b"[" * 30000 + b"]" * 30000 + b"}", "nested too deeply"),
        (b'{"results": [{"event": "prediction", "value": 1, "nonce": ' + b"7" * 5000 + b"}]}", "a number of more than 4300 digits"),
        (b"nope", "Expecting value at character 0"),
    ):
        answer = httpx.post(
            f"{server.url}/api/v1/results", content=content, timeout=30,
            headers={"Authorization": f"Bearer {projected_token(key, 'cluster-key')}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert (answer.status_code, answer.headers["content-type"]) == (422, "application/problem+json"), answer.text
        assert answer.json()["detail"] == f"the request is invalid: body: not valid JSON ({why})"
    from allora_gitops.api.web import LOGIN_CSRF_COOKIE

    with httpx.Client(base_url=server.url, timeout=30) as browser:  # the sign-in form, with a NUL or a byte not UTF-8
        browser.get("/login")
        for token in ("agp_0000\x00000_" + "x" * 43, "\udce9" * 60):
            csrf = urllib.parse.quote(browser.cookies[LOGIN_CSRF_COOKIE])  # each answer sets a new one
            body = f"csrf={csrf}&token={urllib.parse.quote(token, errors='surrogateescape')}"
            answer = browser.post("/login", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 401 and "That token is not valid" in answer.text, answer.status_code
    assert "internal error" not in server.log.read_text()


def test_a_prediction_no_float_holds_is_refused_and_the_runtime_goes_on(tmp_path):
    """10**5000 cannot even be written as text (Python's int_max_str_digits): it made the log line raise, and the
    runtime exit 5. Now it is an invalid value like NaN, and the next window is predicted."""
    from tests.fixtures.runtime import run_bootstrap

    bundle = make_bundle(tmp_path / "b", "def run(nonce):\n    return {1: 10**5000, 2: {'eth': -(10**400)}}.get(nonce, nonce / 10)\n")
    result = run_bootstrap(bundle, "--dry-run", "--nonce", "1", "--nonce", "2", "--nonce", "3")
    assert result.code == EXIT_INVALID_PREDICTION, result.out
    refused = {e["nonce"]: e["message"] for e in result.of("prediction_refused")}
    assert refused == {
        1: "the prediction is an integer of 16610 bits, beyond any float; return a float",
        2: "the value for label 'eth' is an integer of 1329 bits, beyond any float; return a float",
    }
    assert [(e["nonce"], e["value"]) for e in result.of("prediction")] == [(3, 0.3)]


def test_a_value_the_database_refuses_as_data_is_an_input_error_never_a_503(records, deployment):  # noqa: F811
    """Behind the normaliser, the last line: PostgreSQL's data exceptions (and psycopg's own refusal of a NUL) are
    the caller's input, RecordRefused → 422 on the API, where a DatabaseError would be a 503 that clients retry."""
    from allora_gitops.api.problems import core_status
    from allora_gitops.db.results import ResultRow, record_results
    from allora_gitops.errors import RecordRefused

    with pytest.raises(RecordRefused, match=r"^cannot read the records: .*NUL"):
        records.list_deployments(name="a\x00b")
    with pytest.raises(RecordRefused) as caught:  # a row that did not come through the normaliser
        record_results(records.connection, deployment.id, [ResultRow("prediction", 1, "error", error_message="nul \x00")])
    assert core_status(caught.value) == 422
    assert records.connection.execute("SELECT count(*) FROM submission_results").fetchone() == (0,)


def test_rows_the_database_refuses_in_a_batch_are_refused_alone_and_the_others_stored(records, deployment):  # noqa: F811
    from allora_gitops.db.results import ResultRow, record_each

    rows = [
        ResultRow("prediction", 1, "success", value="0.1"),
        ResultRow("prediction", 2, "success", value="0.2\x00"),  # rows that did not come through the normaliser:
        ResultRow("prediction", 3, "error", error_message="nul \x00"),  # psycopg refuses the NUL
        ResultRow("prediction", 4, "success", value="0.4"),
    ]
    stored, refused = record_each(records.connection, deployment.id, rows)
    assert stored == 2 and [i for i, _ in refused] == [1, 2]
    assert all("NUL" in why for _, why in refused)
    assert records.connection.execute("SELECT nonce FROM submission_results ORDER BY nonce").fetchall() == [(1,), (4,)]
    assert record_each(records.connection, deployment.id, rows[:1]) == (0, [])  # already recorded
