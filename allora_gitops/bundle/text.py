"""Bundle text as pip and git read it: the one decoder for requirements, constraints, ignore rules and model.yaml.

pip decodes a requirements file by its byte-order mark first (``pip/_internal/utils/encoding.py``
``auto_decode``: UTF-8, UTF-16 and UTF-32 with a BOM), so the UTF-16 LE file that Windows PowerShell's
``pip freeze > requirements.txt`` writes installs fine; git skips a UTF-8 BOM in ignore files. We
accept exactly those, and everything else must be UTF-8: pip's last resort is the machine's locale,
which differs between a laptop and the image, so a Latin-1 file is refused with a hint at what it
looks like rather than read one way here and another way in the container.
"""

from __future__ import annotations

import codecs

from allora_gitops.errors import BundleError, Problem

# Longest first: a UTF-32 LE BOM begins with the UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)


class BundleTextError(BundleError):
    """A bundle text file is in an encoding neither pip nor the image would read the same way."""


def bom_encoding(raw: bytes) -> str | None:
    """The Python codec named by ``raw``'s byte-order mark (BOM not included in the decode), or None."""
    for bom, codec, _ in BOMS:
        if raw.startswith(bom):
            return codec
    return None


def decode_text(raw: bytes, file: str, code: str = "encoding") -> str:
    """``raw`` as text: BOM-marked UTF-8/16/32 (BOM dropped), else strict UTF-8.

    Raises BundleTextError with one problem at ``file:line:col`` of the first bad byte, naming the
    encoding the bytes look like and telling the user to re-save as UTF-8.
    """
    for bom, codec, label in BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                raise BundleTextError(problems=[Problem(
                    f"starts with a {label} byte-order mark but is not valid {label} (byte {exc.start + len(bom)}); "
                    "re-save it as UTF-8", file, code=code)]) from None
    try:
        text = raw.decode("utf-8")
        bad = text.find("\0")  # valid UTF-8, but no text file holds NUL: UTF-16 without its BOM does
        if bad < 0:
            return text
        at = raw.index(b"\0")
    except UnicodeDecodeError as exc:
        at = exc.start
    line = raw.count(b"\n", 0, at) + 1
    col = at - (raw.rfind(b"\n", 0, at) + 1) + 1
    raise BundleTextError(problems=[Problem(
        f"not UTF-8 text (byte 0x{raw[at]:02x}; it looks like {_looks_like(raw)}); re-save it as UTF-8",
        file, line, col, code=code)])


def _looks_like(raw: bytes) -> str:
    sample = raw[:4096]
    if len(sample) >= 4:
        odd_nuls, even_nuls = sample[1::2].count(0), sample[0::2].count(0)
        half = len(sample) // 2
        if odd_nuls > half * 0.3 and even_nuls < half * 0.05:
            return "UTF-16 LE without a byte-order mark"
        if even_nuls > half * 0.3 and odd_nuls < half * 0.05:
            return "UTF-16 BE without a byte-order mark"
    if b"\0" in sample:
        return "binary data, not text"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "a legacy 8-bit encoding"
    return "Windows-1252 / Latin-1"

