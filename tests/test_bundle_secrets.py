"""The secret scanner on its own: mnemonics of every length, keys, and what must not trip it."""

from __future__ import annotations

import hashlib

import pytest

from allora_gitops.bundle.secrets import bip39_words, is_env_file, is_mnemonic, scan_bytes


def mnemonic(n_words: int, seed: bytes = b"seed") -> list[str]:
    """A valid BIP-39 mnemonic of ``n_words`` words, computed from the standard (entropy + checksum)."""
    words = list(bip39_words())
    entropy_bits = n_words * 11 * 32 // 33
    entropy = hashlib.sha256(seed).digest()[: entropy_bits // 8]
    cs = entropy_bits // 32
    bits = (int.from_bytes(entropy, "big") << cs) | (hashlib.sha256(entropy).digest()[0] >> (8 - cs))
    return [words[(bits >> (11 * (n_words - 1 - i))) & 0x7FF] for i in range(n_words)]


def test_wordlist_is_the_bip39_english_list():
    words = bip39_words()
    assert len(words) == 2048 and words["abandon"] == 0 and words["zoo"] == 2047


@pytest.mark.parametrize("n", [12, 15, 18, 21, 24])
def test_mnemonics_of_every_length_are_found(n):
    phrase = " ".join(mnemonic(n))
    assert is_mnemonic(phrase.split())
    (finding,) = scan_bytes("w.py", f'x = 1\nWALLET = "{phrase}"\n'.encode())
    assert (finding.line, finding.col, finding.kind) == (2, 11, "mnemonic")


def test_mnemonic_inside_a_longer_run_and_comma_separated():
    words = mnemonic(12)
    text = ("zoo zoo " + ", ".join(words) + " zoo").encode()
    assert [f.kind for f in scan_bytes("w.txt", text)] == ["mnemonic"]


def test_a_bad_checksum_is_not_a_mnemonic():
    words = mnemonic(12)
    words[-1] = "zoo" if words[-1] != "zoo" else "abandon"
    assert not is_mnemonic(words)
    assert scan_bytes("w.txt", " ".join(words).encode()) == []


def test_hex_keys_but_not_digests_or_longer_hex():
    key = "ab" * 32
    assert [f.kind for f in scan_bytes("k.py", f"PRIVATE_KEY = '{key}'\n".encode())] == ["hex"]
    assert scan_bytes("k.py", f"EXPECTED_SHA256 = '{key}'\n".encode()) == []
    assert scan_bytes("k.py", f"weights_digest: {key}\n".encode()) == []
    assert scan_bytes("k.py", f"x = '{key}ab'\n".encode()) == []  # 66 hex digits: not a 32-byte key


def test_pem_private_keys_of_each_flavour():
    for label in ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        (finding,) = scan_bytes("k.pem", f"\n-----BEGIN {label}-----\nabc\n".encode())
        assert (finding.line, finding.kind) == (2, "pem")
    assert scan_bytes("c.pem", b"-----BEGIN CERTIFICATE-----\nabc\n") == []  # certificates are public


@pytest.mark.parametrize("path, env", [(".env", True), ("config/.env.local", True), ("prod.env", True),
                                       (".envrc", True), ("environment.py", False), ("env.py", False)])
def test_env_files(path, env):
    assert is_env_file(path) is env


@pytest.mark.parametrize("codec, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_bom_marked_utf16_and_utf32_text_is_scanned_not_skipped_as_binary(tmp_path, codec, bom):
    from allora_gitops.bundle.secrets import scan_file

    path = tmp_path / "wallet.txt"  # what PowerShell's `Set-Content`/`>` writes by default
    path.write_bytes(bom + ("notes\r\nphrase: " + " ".join(mnemonic(12)) + "\r\n").encode(codec))
    (finding,) = scan_file("wallet.txt", path, path.stat().st_size)
    assert (finding.path, finding.line, finding.kind) == ("wallet.txt", 2, "mnemonic")
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\x01" + " ".join(mnemonic(12)).encode())  # NUL first, no BOM: binary, not scanned
    assert scan_file("weights.bin", binary, binary.stat().st_size) == []


@pytest.mark.parametrize("layout, line, col", [
    ("comments", 2, 3),        # "# abandon" one word per line, in a script or config
    ("hash-numbered", 2, 4),   # "#1 abandon"
    ("markdown-table", 4, 7),  # "| 1 | abandon |" in a README
    ("word-labels", 2, 9),     # "Word 1: abandon", as wallets export it ("word" is itself a wordlist word)
    ("short-labels", 2, 5),    # "w1: abandon"
])
def test_mnemonic_layouts_with_comment_markers_tables_and_labels_are_found(layout, line, col):
    words = mnemonic(12)
    text = {
        "comments": "x = 1\n" + "".join(f"# {w}\n" for w in words),
        "hash-numbered": "seed\n" + "".join(f"#{i} {w}\n" for i, w in enumerate(words, 1)),
        "markdown-table": "Backup\n| # | word |\n|---|---|\n" + "".join(f"| {i} | {w} |\n" for i, w in enumerate(words, 1)),
        "word-labels": "My wallet\n" + "".join(f"Word {i}: {w.capitalize()}\n" for i, w in enumerate(words, 1)),
        "short-labels": "phrase\n" + "".join(f"w{i}: {w}\n" for i, w in enumerate(words, 1)),
    }[layout]
    (finding,) = scan_bytes("notes.md", text.encode())
    assert (finding.line, finding.col, finding.kind) == (line, col, "mnemonic")
    assert finding.fingerprint == "sha256:" + hashlib.sha256(" ".join(words).encode()).hexdigest()  # these words, no label


def test_labelled_lists_of_ordinary_words_are_not_mnemonics():
    text = "".join(f"item {i}: {w}\n" for i, w in enumerate(["apple", "zoo", "wallet"] * 8, 1))
    assert scan_bytes("list.md", text.encode()) == []
