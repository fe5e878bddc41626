"""The users of benchmarks/bench_load.py, for Locust (run headless by that script; not on its own).

``$ALLORA_LOAD_CONFIG`` names a JSON file the set-up wrote: the two servers' URLs, one pod token per simulated
pod, page users' tokens and deployment ids, and the upload archives. Three kinds of user, each spread over the
two servers by its index:

- ``Pod`` (500): a model pod's reporter — every 10 s a batch of results (a prediction and a refusal, nonces
  unique per pod) to ``POST /api/v1/results`` with its projected ServiceAccount token; 1 % of batches are
  hostile (a NUL byte or a lone surrogate in a message, a timestamp that overflows, a truncated JSON body).
- ``Browser`` (20): a signed-in person reading ``/`` and their deployments' pages every 2-5 s.
- ``Uploader`` (4): ``POST /api/bundles`` of a 50 MB bundle in a loop; uploaders 0 and 1 trickle the body at
  ``slow_upload_bytes_per_second`` (a slow client), 2 and 3 send at loopback speed.

On stop, each process writes what it saw to ``$ALLORA_LOAD_OUT``: status codes per request name, and per pod
the results of batches answered 2xx with the server's ``stored`` count (the exactly-once check).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from collections import Counter
from datetime import datetime, timezone

from locust import HttpUser, between, events, task

CONFIG = json.loads(open(os.environ["ALLORA_LOAD_CONFIG"]).read())
STATUS: Counter = Counter()  # (request name, status code or exception name) → count
ACKED: list = []  # [pod index, [nonce, …]] of batches answered 2xx with every result stored
ACCEPTED = {"partial_batches": 0, "batches": 0, "results_sent_in_accepted": 0, "stored": 0, "already_recorded": 0, "hostile_accepted": 0, "hostile_sent": 0}
_pod_index = itertools.count()
_browser_index = itertools.count()
_uploader_index = itertools.count()


FIVEXX: Counter = Counter()  # (request name, the problem's detail) of 5xx answers
STARTED: Counter = Counter()  # uploads begun (an upload still sending when the run ends has no answer)


@events.request.add_listener
def _count(name, response, exception, **kwargs):
    status = getattr(response, "status_code", 0) if response is not None else 0
    STATUS[(name, status or f"{type(exception).__name__}: {str(exception)[:160]}")] += 1
    if status >= 500:
        try:
            detail = str(response.json().get("detail", ""))[:160]
        except ValueError:
            detail = response.text[:160]
        FIVEXX[(name, detail)] += 1


@events.test_stop.add_listener
def _write(**kwargs):
    with open(os.environ["ALLORA_LOAD_OUT"], "w") as out:
        json.dump({"status": [[n, str(s), c] for (n, s), c in STATUS.items()], "accepted": ACCEPTED,
                   "fivexx": [[n, d, c] for (n, d), c in FIVEXX.most_common()], "started": dict(STARTED), "acked": ACKED}, out)  # fmt: skip


def _ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Pod(HttpUser):
    """Each pod on its own 10 s schedule, the phases spread evenly over the period as independent pods' are.

    (Locust's ``constant_pacing`` counts a sleep in ``on_start`` as the first task's run time, so the second batch
    of every pod left at the same instant: 500 posts in ~2 s every 10 s instead of 50 per second.)"""

    fixed_count = CONFIG["pods"]

    def wait_time(self):
        return max(0.0, self.next_at - time.monotonic())

    def on_start(self):
        self.index = next(_pod_index)
        self.client.base_url = CONFIG["servers"][self.index % len(CONFIG["servers"])]
        self.token = CONFIG["pod_tokens"][self.index % len(CONFIG["pod_tokens"])]
        self.nonce = 0
        self.rng = random.Random(self.index)
        self.next_at = time.monotonic() + self.rng.uniform(0, CONFIG["batch_seconds"])  # pods do not start in step
        time.sleep(self.next_at - time.monotonic())

    def _batch(self) -> tuple[list[dict], bool]:
        results = []
        for _ in range(CONFIG["results_per_batch"] // 2):
            self.nonce += 1
            results.append({"ts": _ts(), "level": "info", "event": "prediction", "nonce": self.nonce,
                            "value": round(self.rng.uniform(2000, 4000), 4), "latency_ms": round(self.rng.uniform(1, 900), 3)})  # fmt: skip
            self.nonce += 1
            results.append({"ts": _ts(), "level": "error", "event": "prediction_refused", "nonce": self.nonce, "reason": "exception",
                            "error_type": "ValueError", "message": f"no price for window {self.nonce}",
                            "latency_ms": round(self.rng.uniform(1, 900), 3), "where": "/workspace/bundle/src/model.py:42"})  # fmt: skip
        hostile = self.rng.random() < CONFIG["hostile_fraction"]
        if hostile:  # one bad item among good ones: it must not cost them
            kind = self.rng.choice(("nul", "surrogate", "overflow", "truncated"))
            bad = results[-1]
            if kind == "nul":
                bad["message"] = "bad\x00byte"
            elif kind == "surrogate":
                bad["message"] = "file \udcff.csv"
            elif kind == "overflow":
                bad["ts"] = "9999-12-31T23:30:00-01:00"
            else:
                bad["truncated"] = True
        return results, hostile

    @task
    def report(self):
        self.next_at += CONFIG["batch_seconds"]  # the next batch is due one period after this one was, however long this takes
        results, hostile = self._batch()
        truncated = any(r.pop("truncated", False) for r in results)
        body = json.dumps({"results": results}).encode()  # lone surrogates as \udcff escapes, as a JSON encoder sends them
        if truncated:
            body = body[: len(body) // 2]
        ACCEPTED["hostile_sent"] += hostile
        STARTED["POST /api/v1/results"] += 1
        with self.client.post("/api/v1/results", data=body, name="POST /api/v1/results", catch_response=True,
                              headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}) as r:  # fmt: skip
            if 200 <= r.status_code < 300:
                answer = r.json()
                ACCEPTED["batches"] += 1
                ACCEPTED["results_sent_in_accepted"] += len(results)
                ACCEPTED["stored"] += int(answer.get("stored", 0))
                ACCEPTED["already_recorded"] += int(answer.get("already_recorded", 0))
                ACCEPTED["hostile_accepted"] += hostile
                nonces = [x["nonce"] for x in results]
                if int(answer.get("stored", 0)) + int(answer.get("already_recorded", 0)) == len(results):
                    ACKED.append([self.index, nonces])  # every one of these must be in the database, once
                else:
                    ACCEPTED["partial_batches"] += 1  # some items refused (per item): not checked one by one
                r.success()
            elif hostile and 400 <= r.status_code < 500:
                r.success()  # refusing a hostile batch is right (whether the good items beside it are kept is counted)
            elif r.status_code == 0:  # no answer at all: say why (reset, refused, timed out)
                r.failure(f"no answer ({type(r.error).__name__}: {str(r.error)[:120]})")
            else:
                r.failure(f"{r.status_code}")


class Browser(HttpUser):
    fixed_count = CONFIG["browsers"]
    wait_time = between(2, 5)

    def on_start(self):
        self.index = next(_browser_index)
        self.client.base_url = CONFIG["servers"][self.index % len(CONFIG["servers"])]
        user = CONFIG["browser_users"][self.index % len(CONFIG["browser_users"])]
        self.deployments = user["deployments"]
        form = self.client.get("/login", name="GET /login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        self.client.post("/login", data={"token": user["token"], "csrf": csrf}, name="POST /login", allow_redirects=False)

    @task(1)
    def overview(self):
        self.client.get("/", name="GET /")

    @task(2)
    def deployment(self):
        self.client.get(f"/deployments/{random.choice(self.deployments)}", name="GET /deployments/{id}")


class _Trickle:
    """A multipart body read at ``rate`` bytes/s at most (None: as fast as asked); ``len()`` gives requests a
    Content-Length, so the body is sent as declared, not chunked."""

    def __init__(self, head: bytes, path: str, tail: bytes, rate):
        self.parts = [head, path, tail]
        self.size = len(head) + os.path.getsize(path) + len(tail)
        self.rate, self.sent, self.start = rate, 0, time.monotonic()
        self.file = None

    def __len__(self):
        return self.size

    def read(self, n=65536):
        while self.parts:
            part = self.parts[0]
            if isinstance(part, str):
                self.file = self.file or open(part, "rb")
                chunk = self.file.read(min(n, 65536))
                if not chunk:
                    self.file.close()
                    self.parts.pop(0)
                    continue
            else:
                chunk = part
                self.parts.pop(0)
            self.sent += len(chunk)
            if self.rate:
                ahead = self.sent / self.rate - (time.monotonic() - self.start)
                if ahead > 0:
                    time.sleep(ahead)
            return chunk
        return b""


class Uploader(HttpUser):
    fixed_count = CONFIG["uploaders"]
    wait_time = between(0.5, 1.5)

    def on_start(self):
        self.index = next(_uploader_index)
        self.client.base_url = CONFIG["servers"][self.index % len(CONFIG["servers"])]
        self.upload = CONFIG["uploads"][self.index % len(CONFIG["uploads"])]
        self.slow = self.index < CONFIG["slow_uploaders"]

    @task
    def upload_bundle(self):
        boundary = f"allora-load-{self.index}-{time.monotonic_ns()}"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"bundle.tar.gz\"\r\n"
                "Content-Type: application/gzip\r\n\r\n").encode()  # fmt: skip
        tail = f"\r\n--{boundary}--\r\n".encode()
        body = _Trickle(head, self.upload["archive"], tail, CONFIG["slow_upload_bytes_per_second"] if self.slow else None)
        name = f"POST /api/bundles ({'slow' if self.slow else 'fast'} {CONFIG['upload_mb']} MB)"
        STARTED[name] += 1
        self.client.post("/api/bundles", data=body, name=name, timeout=600,
                         headers={"Authorization": f"Bearer {self.upload['token']}",
                                  "Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
