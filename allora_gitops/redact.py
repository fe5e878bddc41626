"""Saying which server we mean without printing its credentials.

One place for it, because every error that names a database or store URL goes through here, and
because the messages of the libraries underneath (libpq above all) quote what they could not parse.
"""

from __future__ import annotations

import re

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)")
# key=value connection strings: password='quoted \' value' or password=bare; libpq's sslpassword too, and any
# key that names a secret (…password, …passwd, …secret, …token).
_PASSWORD_PARAM = re.compile(r"(?i)\b([a-z_]*(?:password|passwd|secret|token)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)")
# Schemes whose user name alone is an account, not a credential (peer or certificate authentication).
_USER_IS_ACCOUNT = ("postgres://", "postgresql://", "mysql://")
# A URL with userinfo inside free text (git quotes the URLs it failed on).
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def display_url(url: str) -> str:
    """``url`` as it may be printed: every credential in it becomes ``***``.

    The one rule for URLs (database, object store, GitOps repository): the password of ``user:password@``
    and any ``password=``/``sslpassword=``/``token=`` parameter are masked; a userinfo without a password
    (``https://TOKEN@host``) is masked whole, except for database schemes, where it is the account name.
    The userinfo runs to the *last* ``@``: a password holding an unencoded ``@`` must not leak its tail.
    A string that is neither a URL nor a ``key=value`` list is not shown at all: it may be a pasted secret.
    """
    m = _SCHEME.match(url)
    if m:
        rest = url[m.end():]
        if "@" in rest:
            userinfo, host = rest.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            if ":" in userinfo:
                shown_userinfo = f"{user}:{MASK}"
            elif url.lower().startswith(_USER_IS_ACCOUNT) and len(user) <= 63 and re.fullmatch(r"[A-Za-z0-9._-]+", user):
                shown_userinfo = user
            else:
                shown_userinfo = MASK
            rest = f"{shown_userinfo}@{host}"
        return m.group(1) + _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", rest)
    if "=" in url:
        return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", url)
    return "(not a URL)" if url.strip() else "(empty)"


def redact_urls_in_text(text: str) -> str:
    """Free text (a tool's message) with every URL in it shown as :func:`display_url` shows it."""
    return _URL_IN_TEXT.sub(lambda m: display_url(m.group(0)) if "@" in m.group(0) or "=" in m.group(0) else m.group(0), text)


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that must never be printed: its password(s), raw and percent-decoded, longest first."""
    from urllib.parse import unquote

    found: list[str] = []
    m = _SCHEME.match(url)
    if m and "@" in url[m.end():]:
        userinfo = url[m.end():].rsplit("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    for pm in _PASSWORD_PARAM.finditer(url):
        found.append(pm.group(2).strip("'"))
    if not m and "=" not in url:
        found.append(url.strip())  # not a connection string at all: treat the whole of it as secret
    out = {s for s in found if s}
    out |= {unquote(s) for s in out}
    return sorted((s for s in out if s), key=len, reverse=True)


def redact_message(message: str, url: str) -> str:
    """A library's error ``message`` about ``url`` with the URL shown as ``display_url`` and no piece of its password.

    libpq quotes the token it could not parse (``invalid percent-encoded token: "pa%zzss"``): a quoted
    fragment that shares a run of 4+ characters with a password is masked too.
    """
    secrets = url_secrets(url)
    if url:
        message = message.replace(url, display_url(url))
    for secret in secrets:
        if len(secret) >= 4:  # shorter ones would mangle ordinary words; the quoted check below catches them
            message = message.replace(secret, MASK)

    def _quoted(q: re.Match) -> str:
        text = q.group(2)
        return f"{q.group(1)}{MASK}{q.group(1)}" if any(_shares_run(text, s) for s in secrets) else q.group(0)

    return re.sub(r"([\"'])(.*?)\1", _quoted, message)


def _shares_run(text: str, secret: str, run: int = 4) -> bool:
    if len(secret) < run:
        return secret in text
    return any(secret[i:i + run] in text for i in range(len(secret) - run + 1))


_HEX_KEY = re.compile(r"(?<![0-9A-Fa-f])(0[xX])?[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_API_TOKEN = re.compile(r"agp_[0-9a-f]{8}_[A-Za-z0-9_-]{8,}")  # the platform's API token (api/auth.py), past its prefix
SHOWN_VALUE_CHARS = 60


def looks_like_secret(value: str) -> bool:
    """True when ``value`` has the shape of a private key (64 hex digits, ``0x`` or not), a BIP-39 mnemonic
    (12 or more words) or a platform API token (``agp_<8 hex>_…``): what a page, an error or a log must never
    repeat."""
    return bool(_HEX_KEY.search(value) or _API_TOKEN.search(value)) or len(value.split()) >= 12


def echoable(values: dict[str, str]) -> dict[str, str]:
    """A refused form's values to put back in its fields: each one that looks like a secret becomes empty, so a
    key or mnemonic pasted into the wrong field is never sent back in a page (the reader types it again)."""
    return {k: "" if isinstance(v, str) and looks_like_secret(v) else v for k, v in values.items()}


def shown_value(value: object) -> str:
    """A user's value as an error message may quote it (``(got …)``): credentials in a URL masked,
    anything shaped like a key or a mnemonic withheld, and a long value cut short."""
    if isinstance(value, str):
        if looks_like_secret(value):
            return "a value that looks like a secret, not shown"
        if _SCHEME.match(value):
            value = display_url(value)
    shown = repr(value)
    return shown if len(shown) <= SHOWN_VALUE_CHARS else shown[: SHOWN_VALUE_CHARS - 1] + "…"
