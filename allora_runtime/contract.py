"""What the runtime promises to everything outside it: exit codes, variable names, event names, defaults.

``allora_gitops`` imports these (the Dockerfile, the Deployment, ``allora-bundle run``
read them from here), so the contract is written once. Standard library only, no
side effects: importing it costs nothing.
"""

from __future__ import annotations

# --- exit codes ------------------------------------------------------------------
EXIT_OK = 0  # clean stop (SIGTERM/SIGINT), or every prediction valid
EXIT_UNHEALTHY = 1  # --healthcheck: the heartbeat is missing or too old
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_CONFIG = 3  # model.yaml, environment variable or wallet is wrong
EXIT_IMPORT = 4  # the entrypoint module or function cannot be imported (or the SDK is missing)
EXIT_RUNTIME = 5  # the loop crashed, the SDK worker stopped on its own, or too many calls are stuck
EXIT_CONNECTION = 6  # the chain stayed unreachable after the bounded retries
EXIT_INVALID_PREDICTION = 7  # --check / --dry-run --nonce: a prediction was refused

# --- environment variables the runtime reads ---------------------------------------
ENV_BUNDLE_ROOT = "BUNDLE_ROOT"
ENV_DEBUG = "DEBUG"
ENV_TOPIC_ID = "ALLORA_TOPIC_ID"
ENV_NETWORK = "ALLORA_NETWORK"
ENV_CHAIN_ID = "ALLORA_CHAIN_ID"
ENV_WEBSOCKET_URL = "ALLORA_WEBSOCKET_URL"
ENV_FAUCET_URL = "ALLORA_FAUCET_URL"
ENV_FEE_TIER = "ALLORA_FEE_TIER"
ENV_POLLING_INTERVAL = "ALLORA_POLLING_INTERVAL"
ENV_MAX_RUNTIME = "ALLORA_MAX_RUNTIME"  # seconds; when reached the runtime stops and exits 0 (sandbox Jobs complete)
ENV_API_KEY = "ALLORA_API_KEY"
ENV_METRICS_PORT = "ALLORA_METRICS_PORT"
ENV_METRICS_ADDRESS = "ALLORA_METRICS_ADDRESS"
ENV_HEARTBEAT_FILE = "ALLORA_HEARTBEAT_FILE"
ENV_HEARTBEAT_INTERVAL = "ALLORA_HEARTBEAT_INTERVAL"
ENV_HEARTBEAT_MAX_AGE = "ALLORA_HEARTBEAT_MAX_AGE"
ENV_STARTUP_LIMIT = "ALLORA_STARTUP_LIMIT"
ENV_WALLET_DIR = "ALLORA_WALLET_DIR"
ENV_MNEMONIC = "ALLORA_MNEMONIC"
ENV_PRIVATE_KEY = "ALLORA_PRIVATE_KEY"
ENV_MNEMONIC_FILE = "ALLORA_MNEMONIC_FILE"
ENV_PRIVATE_KEY_FILE = "ALLORA_PRIVATE_KEY_FILE"
ENV_CONNECT_RETRIES = "ALLORA_CONNECT_RETRIES"
ENV_RETRY_BACKOFF = "ALLORA_RETRY_BACKOFF"
ENV_MAX_STUCK_CALLS = "ALLORA_MAX_STUCK_CALLS"
ENV_BUNDLE_SHA256 = "ALLORA_BUNDLE_SHA256"  # the archive's sha256, shown in allora_model_info
# Results reporting (allora_runtime/reporter.py): set by the Deployment only when the platform collects results.
ENV_RESULTS_URL = "ALLORA_RESULTS_URL"  # the platform API's results endpoint, POSTed to as is; unset: only logged
ENV_RESULTS_TOKEN_FILE = "ALLORA_RESULTS_TOKEN_FILE"  # the projected ServiceAccount token, read again for each send
ENV_RESULTS_QUEUE_LIMIT = "ALLORA_RESULTS_QUEUE_LIMIT"  # results waiting to be sent; beyond it the oldest are dropped
ENV_RESULTS_RETRY_BACKOFF = "ALLORA_RESULTS_RETRY_BACKOFF"  # first retry delay (s), doubled each failure, capped below
# Log shipping (allora_runtime/shipper.py): on whenever results reporting is, through the same token and API.
ENV_LOGS_URL = "ALLORA_LOGS_URL"  # default: ALLORA_RESULTS_URL with its last path segment `results` made `logs`
ENV_LOGS_RATE = "ALLORA_LOGS_RATE"  # lines per second shipped at most (a burst of LOGS_BURST_SECONDS of it); 0: off
# prometheus-client's own variable: multiprocess mode, which the runtime does not use (one process serves metrics)
ENV_PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Values that are secrets: scrubbed from every log line, and never handed to a local run's model process.
SECRET_ENV = (ENV_MNEMONIC, ENV_PRIVATE_KEY, ENV_API_KEY)
WALLET_ENV = (ENV_MNEMONIC, ENV_PRIVATE_KEY, ENV_MNEMONIC_FILE, ENV_PRIVATE_KEY_FILE)
WALLET_FILES = ("mnemonic", "private_key")  # the files a mounted wallet directory may hold

# --- defaults (each can be changed by the environment variable named beside it) --------
DEFAULT_BUNDLE_ROOT = "/workspace/bundle"  # BUNDLE_ROOT
DEFAULT_MAX_SECONDS = 25.0  # model.yaml runtime.max_seconds, or --timeout
DEFAULT_POLLING_INTERVAL = 120  # model.yaml allora.polling_interval, ALLORA_POLLING_INTERVAL
DEFAULT_FEE_TIER = "STANDARD"
FEE_TIERS = ("ECO", "STANDARD", "PRIORITY")
DEFAULT_NETWORK = "testnet"
DEFAULT_METRICS_PORT = 9090  # ALLORA_METRICS_PORT (0 disables)
DEFAULT_METRICS_ADDRESS = "0.0.0.0"  # ALLORA_METRICS_ADDRESS
DEFAULT_HEARTBEAT_FILE = "/tmp/allora-heartbeat"  # ALLORA_HEARTBEAT_FILE
DEFAULT_HEARTBEAT_INTERVAL = 10.0  # ALLORA_HEARTBEAT_INTERVAL
DEFAULT_HEARTBEAT_MAX_AGE = 120.0  # ALLORA_HEARTBEAT_MAX_AGE (--healthcheck)
DEFAULT_STARTUP_LIMIT = 600.0  # ALLORA_STARTUP_LIMIT: the heartbeat is kept fresh this long while the model imports
DEFAULT_WALLET_DIR = "/var/run/secrets/allora/wallet"  # ALLORA_WALLET_DIR
# The projected ServiceAccount token volume the Deployment mounts when results reporting is on
# (https://kubernetes.io/docs/concepts/storage/projected-volumes/#serviceaccounttoken): the API checks the audience.
RESULTS_TOKEN_AUDIENCE = "allora-platform"
RESULTS_TOKEN_EXPIRATION_SECONDS = 3600  # the kubelet rotates the file at 80 % of this
RESULTS_TOKEN_DIR = "/var/run/secrets/allora/platform-token"
RESULTS_TOKEN_PATH = "token"  # the file inside RESULTS_TOKEN_DIR
DEFAULT_RESULTS_TOKEN_FILE = f"{RESULTS_TOKEN_DIR}/{RESULTS_TOKEN_PATH}"  # ALLORA_RESULTS_TOKEN_FILE
DEFAULT_RESULTS_QUEUE_LIMIT = 10_000  # ALLORA_RESULTS_QUEUE_LIMIT: about two weeks of 2-minute windows (2 results each)
DEFAULT_RESULTS_RETRY_BACKOFF = 1.0  # ALLORA_RESULTS_RETRY_BACKOFF
MAX_RESULTS_RETRY_BACKOFF = 60.0
RESULTS_BATCH_SIZE = 100  # results per POST at most
RESULTS_BATCH_BYTES = 48 << 10  # and at most this many bytes of results (the API refuses JSON bodies over 64 KiB)
RESULTS_SEND_TIMEOUT = 10.0  # seconds for one POST
DEFAULT_LOGS_RATE = 100.0  # ALLORA_LOGS_RATE: lines a second; a model printing more has the excess dropped, counted
LOGS_BURST_SECONDS = 10.0  # the bucket holds this many seconds of the rate (a traceback, a start-up's output)
DEFAULT_LOGS_QUEUE_LIMIT = 10_000  # log lines waiting to be sent; beyond it the oldest are dropped
LOGS_LINGER_SECONDS = 0.25  # how long the shipper waits for a batch to fill (the tail is at most this much late)
LOGS_BATCH_SIZE = 500  # lines per POST at most (and RESULTS_BATCH_BYTES)
MAX_LOG_LINE_BYTES = 8 << 10  # a longer line's message is cut before it is queued
RESULTS_FLUSH_SECONDS = 3.0  # on shutdown, how long the reporter may still send (inside STOP_GRACE_SECONDS)
DEFAULT_CONNECT_RETRIES = 5  # ALLORA_CONNECT_RETRIES: consecutive failures before EXIT_CONNECTION
DEFAULT_RETRY_BACKOFF = 2.0  # ALLORA_RETRY_BACKOFF: first delay (s), doubled each time, capped below
MAX_RETRY_BACKOFF = 60.0
STABLE_RUN_SECONDS = 300.0  # a worker that ran this long resets the retry count
DEFAULT_MAX_STUCK_CALLS = 3  # ALLORA_MAX_STUCK_CALLS: timed-out sync calls still running → restart
CONNECT_TIMEOUT = 30.0  # first query to the chain
STOP_GRACE_SECONDS = 5.0  # after SIGTERM, how long the worker gets to wind down (Kubernetes waits 30)
SAMPLE_NONCE = 1000  # --check and --dry-run default nonce
CONTEXT_PARAMETER_NAMES = ("ctx", "context", "run_context")
SDK_VERSION = "1.3.0"  # the allora-sdk live mode is written against; the image installs exactly this
SDK_REQUIREMENT = f"allora-sdk=={SDK_VERSION}"

# --- event names on stdout (one JSON object per line: ts, level, event + fields) -------------------
EVENT_START = "start"
EVENT_CONFIG = "config"
EVENT_IMPORTING = "importing"
EVENT_IMPORTED = "imported"
EVENT_PREDICTION = "prediction"
EVENT_PREDICTION_REFUSED = "prediction_refused"
EVENT_SUBMISSION = "submission"
EVENT_SUBMISSION_FAILED = "submission_failed"
EVENT_SUBMISSION_SKIPPED = "submission_skipped"  # the chain already had our payload for that window: not a result
EVENT_SUBMISSION_UNREPORTED = "submission_unreported"  # a window the SDK called the model for but returned no result
EVENT_SUBMISSION_UNATTRIBUTED = "submission_unattributed"  # a result no call of the SDK explains
# The results: what `allora-gitops results import` reads from the log, and what the reporter POSTs as
# {"results": [<the event's log object>, ...]} to ALLORA_RESULTS_URL.
RESULT_EVENTS = (EVENT_PREDICTION, EVENT_PREDICTION_REFUSED, EVENT_SUBMISSION, EVENT_SUBMISSION_FAILED)
EVENT_PRINT = "print"  # a line something else wrote to stdout (Python or file descriptor 1), wrapped
EVENT_STOPPING = "stopping"
EVENT_STOPPED = "stopped"
EVENT_CONFIG_ERROR = "config_error"
EVENT_IMPORT_ERROR = "import_error"
EVENT_RUNTIME_ERROR = "runtime_error"
EVENT_CONNECTION_ERROR = "connection_error"
ERROR_EVENTS = (EVENT_CONFIG_ERROR, EVENT_IMPORT_ERROR, EVENT_RUNTIME_ERROR, EVENT_CONNECTION_ERROR)

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")
