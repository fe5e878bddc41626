"""Find wallet secrets that would ship inside a bundle: ``.env*`` files, BIP-39 mnemonics, hex and PEM private keys.

Each finding names the file and line, never the secret itself. Binary files
(a NUL byte in the first 8 KiB: weights, pickles) are not scanned; text files
are, whatever their extension, UTF-16/32 ones with a byte-order mark included. A 64-hex string is a key unless its line says
it is a digest (sha256, hash, checksum …), so pinned hashes do not trip it.
A run of 12–24 BIP-39 words counts only when its checksum is valid, so prose
does not trip it either; the words may be in any case, one per line, numbered or
in a list. A public 64-hex value (an event topic hash) is allowed by its
fingerprint in ``.allorasecretsignore`` (one ``sha256:…`` per line, the
``.gitleaksignore`` convention), never by turning the scan off.
"""

from __future__ import annotations

import hashlib
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from allora_gitops.bundle.text import bom_encoding

SNIFF_BYTES = 8192
MAX_SCAN_BYTES = 64 << 20  # text files larger than this are data, not configuration

PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
HEX_KEY = re.compile(rb"(?<![0-9A-Za-z])(?:0x)?([0-9a-fA-F]{64})(?![0-9A-Za-z])")
DIGEST_CONTEXT = re.compile(rb"sha|blake|hash|digest|checksum|integrity|\bsum\b|commit|etag", re.IGNORECASE)
# Between two words of a mnemonic as people write it: spaces, one word per line, list markers and
# numbering ("1. abandon", "#1 abandon", "- abandon", "[\"abandon\", …]"), comment markers ("# abandon"),
# Markdown tables ("| 1 | abandon |"), quotes and commas. Letters may be any case.
_SEPARATORS = b" \t\r\n,'\"-*.)(][:;#|0123456789"
MNEMONIC_LENGTHS = (24, 21, 18, 15, 12)
MIN_RUN_CHARS = 12 * 3 + 11  # the shortest text a 12-word mnemonic can be

# Regexes run at ~20 MB/s; bytes.translate, split and substring search at GB/s. A file is first reduced
# to its "shape", and only stretches of letters and separators long enough to hold a mnemonic are split
# into words (in C) and looked up in the wordlist.
_HEX_SHAPE = bytes(ord("x") if chr(c) in "0123456789abcdefABCDEF" else ord(".") for c in range(256))
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_WORD_SHAPE = bytes(ord("a") if c in _LETTERS or c in _SEPARATORS else ord("#") for c in range(256))
_TO_WORDS = bytes(c + 32 if 65 <= c <= 90 else ord(" ") if c in _SEPARATORS else c for c in range(256))  # lower, seps → space
_WORD_RUN = b"a" * MIN_RUN_CHARS
_TWELVE_LISTED = b"\1" * 12
_ELEVEN_SAME = b"\1" * 11  # twelve equal labels in a row
_HEX_RUN = b"x" * 64
ALLOWABLE_KINDS = ("hex",)  # public 32-byte values exist (event topic hashes); a mnemonic, a PEM key or .env never


@dataclass(frozen=True)
class SecretFinding:
    path: str
    line: int | None
    col: int | None
    kind: str
    fingerprint: str = ""  # "sha256:<hex>" of the normalised value (hex keys, mnemonics); never the value itself

    def message(self) -> str:
        text = {
            "env": "environment file would ship in the bundle; delete it or add it to .allorabundleignore",
            "pem": "PEM private key; keep keys out of the bundle (the platform passes the wallet as a Secret)",
            "hex": "64-hex-digit string that looks like a private key; keep keys out of the bundle",
            "mnemonic": "BIP-39 mnemonic phrase; keep the wallet out of the bundle (the platform passes it as a Secret)",
        }[self.kind]
        if self.fingerprint and self.kind in ALLOWABLE_KINDS:
            text += f"; if it is a public value (an event topic hash, say), allow it: add {self.fingerprint} to {ALLOW_FILE}"
        return text


ALLOW_FILE = ".allorasecretsignore"


def parse_allow_list(text: str) -> set[str]:
    """Fingerprints in an allow-list file: one ``sha256:<64 hex>`` per line, ``#`` comments.

    The convention of ``.gitleaksignore`` and detect-secrets' baseline: a known public value is
    allowed by its fingerprint, committed beside the code, never by turning the scan off.
    """
    allowed = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().lower()
        if re.fullmatch(r"sha256:[0-9a-f]{64}", word):
            allowed.add(word)
    return allowed


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def not_allowed(findings: list[SecretFinding], allowed: set[str]) -> list[SecretFinding]:
    """``findings`` minus the hex values whose fingerprint is allow-listed."""
    return [f for f in findings if not (f.kind in ALLOWABLE_KINDS and f.fingerprint in allowed)]


@lru_cache(maxsize=1)
def bip39_words() -> dict[str, int]:
    text = (Path(__file__).with_name("bip39_english.txt")).read_text(encoding="ascii")
    return {w: i for i, w in enumerate(text.split())}


def is_mnemonic(words: list[str]) -> bool:
    """Is ``words`` a BIP-39 English mnemonic with a valid checksum?"""
    index = bip39_words()
    if len(words) not in MNEMONIC_LENGTHS or any(w not in index for w in words):
        return False
    bits = 0
    for w in words:
        bits = (bits << 11) | index[w]
    total = len(words) * 11
    cs_len = total // 33
    entropy_len = total - cs_len
    entropy = (bits >> cs_len).to_bytes(entropy_len // 8, "big")
    checksum = bits & ((1 << cs_len) - 1)
    return hashlib.sha256(entropy).digest()[0] >> (8 - cs_len) == checksum


def is_env_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith(".env") or name.endswith(".env")  # PRODUCT.md: `.env*` (also .envrc), and prod.env


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    return line, offset - start + 1


def scan_bytes(path: str, data: bytes) -> list[SecretFinding]:
    """Secrets in the text ``data`` of file ``path`` (one finding per line and kind)."""
    found: list[SecretFinding] = []
    seen: set[tuple[int, str]] = set()

    def add(offset: int, kind: str, value: str = "") -> None:
        line, col = _line_col(data, offset)
        if (line, kind) not in seen:
            seen.add((line, kind))
            found.append(SecretFinding(path, line, col, kind, fingerprint(value) if value else ""))

    if b"PRIVATE KEY-----" in data:
        for m in PEM_PRIVATE_KEY.finditer(data):
            add(m.start(), "pem")
    hex_matches = HEX_KEY.finditer(data) if _HEX_RUN in data.translate(_HEX_SHAPE) else ()
    for m in hex_matches:
        line_start = data.rfind(b"\n", 0, m.start()) + 1
        line_end = data.find(b"\n", m.end())
        line_text = data[line_start : line_end if line_end >= 0 else len(data)]
        if DIGEST_CONTEXT.search(line_text):
            continue
        add(m.start(), "hex", m.group(1).decode().lower())
    for offset, words in _mnemonics(data):
        add(offset, "mnemonic", " ".join(words))
    found.sort(key=lambda f: (f.line or 0, f.col or 0))
    return found


def _mnemonics(data: bytes):
    """(offset, words) of each valid mnemonic, in stretches of letters and separators long enough to hold one."""
    index = _wordlist_bytes()
    shape = data.translate(_WORD_SHAPE)
    at = shape.find(_WORD_RUN)
    while at != -1:
        start = shape.rfind(b"#", 0, at) + 1
        end = shape.find(b"#", at)
        end = len(shape) if end == -1 else end
        words = data[start:end].translate(_TO_WORDS).split()
        listed = bytes(map(index.__contains__, words))  # 1 per wordlist word, computed in C
        if listed.count(1) >= 12:
            # A labelled list first: when the label is a wordlist word, the plain run mixes labels and words.
            lists = list(_labelled_lists(words)) if len(words) >= 24 else []
            hits = [found for ws in lists for run in _listed_runs(ws, index) if (found := _mnemonic_in(run)) is not None]
            if not hits:
                hits = [found for run in _listed_runs(words, index, listed) if (found := _mnemonic_in(run)) is not None]
            for found in hits:
                yield _offset_of(data, start, end, found), found
        at = shape.find(_WORD_RUN, end)


def _listed_runs(words: list[bytes], index: frozenset[bytes], listed: bytes | None = None):
    """Each maximal run of 12 or more wordlist words in ``words`` (``listed``: 1 per wordlist word), decoded."""
    if listed is None:
        listed = bytes(map(index.__contains__, words))  # computed in C
    run_at = listed.find(_TWELVE_LISTED)
    while run_at != -1:
        run_end = listed.find(b"\0", run_at)
        run_end = len(listed) if run_end == -1 else run_end
        yield [w.decode() for w in words[run_at:run_end]]
        run_at = listed.find(_TWELVE_LISTED, run_end)


def _labelled_lists(words: list[bytes]):
    """The words of each list that labels every word alike ("Word 1: abandon", "w1 abandon"): 12+ of them.

    Wallets export a phrase that way; the label (its number is a separator already) is every other
    token, so it breaks the run of wordlist words, or joins it when the label is a wordlist word.
    """
    for first in (0, 1):
        labels = words[first::2]
        same = bytes(map(operator.eq, labels, labels[1:]))  # 1 where a label equals the next, in C
        at = same.find(_ELEVEN_SAME)
        while at != -1:
            end = same.find(b"\0", at)
            end = len(same) if end == -1 else end  # labels[at..end] are equal
            yield words[first + 2 * at + 1 : first + 2 * end + 2 : 2]
            at = same.find(_ELEVEN_SAME, end)


@lru_cache(maxsize=1)
def _wordlist_bytes() -> frozenset[bytes]:
    return frozenset(w.encode() for w in bip39_words())


def _offset_of(data: bytes, start: int, end: int, words: list[str]) -> int:
    """Where in ``data[start:end]`` the word sequence ``words`` begins (only for a hit: regex cost is fine)."""
    tokens = [(t.start(), t.group().lower().decode()) for t in re.finditer(rb"[A-Za-z]+", data[start:end])]
    n = len(words)
    for i in range(len(tokens) - n + 1):
        if [w for _, w in tokens[i : i + n]] == words:
            return start + tokens[i][0]
    return next((start + at for at, w in tokens if w == words[0]), start)  # labelled: not consecutive


def _mnemonic_in(words: list[str]) -> list[str] | None:
    """The first window of ``words`` that is a valid mnemonic (longest lengths first), else None.

    A window already checked is not checked again: data repeating one wordlist word ("label1,
    label2, …" in a CSV) would otherwise cost a checksum per word and length (~10 µs each).
    """
    for length in MNEMONIC_LENGTHS:
        checked: set[tuple[str, ...]] = set()
        for i in range(0, len(words) - length + 1):
            window = tuple(words[i : i + length])
            if window in checked:
                continue
            checked.add(window)
            if is_mnemonic(list(window)):
                return list(window)
    return None


def text_for_scan(data: bytes) -> bytes | None:
    """``data`` as the scan reads it (UTF-8 bytes), or None when it is binary.

    BOM-marked UTF-16/32 text is re-encoded as UTF-8, so newlines and thus line numbers survive
    (PowerShell writes UTF-16 by default: a mnemonic saved there must not ship as "binary").
    Otherwise a NUL byte in the first ``SNIFF_BYTES`` means binary, and text is scanned as it is.
    """
    codec = bom_encoding(data)
    if codec is not None and codec != "utf-8":
        bom_len = 4 if codec.startswith("utf-32") else 2
        return data[bom_len:].decode(codec, errors="replace").encode("utf-8")
    return None if b"\0" in data[:SNIFF_BYTES] else data


def scan_file(path: str, abs_path: Path, size: int) -> list[SecretFinding]:
    if is_env_file(path):
        return [SecretFinding(path, None, None, "env")]
    if size == 0 or size > MAX_SCAN_BYTES:
        return []
    try:
        with open(abs_path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            if b"\0" in head and bom_encoding(head) in (None, "utf-8"):
                return []  # binary: not read further
            data = text_for_scan(head + fh.read())
    except OSError:
        return []
    return scan_bytes(path, data) if data is not None else []
