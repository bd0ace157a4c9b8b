"""Keep secrets out of logs, metrics, /api/status and error messages.

Two layers: the exact secret values the config knows (passwords, tokens,
header values, file secrets, secret-named environment variables, values a
journey extracts) are replaced wherever they appear; and patterns catch
what no config names (Authorization headers, DSN passwords, bearer tokens).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "<redacted>"
# Headers whose values never reach a trace, log or detail, whatever the config
# says (the HTTP client masks them in its traces; the pattern below anywhere).
SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
})
_HEADER_NAMES = "|".join(sorted(re.escape(name) for name in SENSITIVE_HEADERS))
_PATTERNS = (
    # Authorization: Bearer xyz / Proxy-Authorization / Cookie values
    (re.compile(rf"(?im)^([<>]?\s*(?:{_HEADER_NAMES}))(\s*:\s*).*$"), rf"\1\2{MASK}"),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{MASK}@"),
    # password=... in DSNs and query strings
    (re.compile(r"(?i)\b(password|passwd|pwd|token|secret)=([^\s&;]+)"), rf"\1={MASK}"),
    (re.compile(r"(?i)\b(bearer)\s+[a-z0-9._~+/=-]+"), rf"\1 {MASK}"),
)
# A value shorter than this is too likely to be an ordinary word.
MIN_SECRET_LEN = 4


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is masked whole.
        unique = {s for s in secrets if len(s) >= MIN_SECRET_LEN}
        self._secrets = tuple(sorted(unique, key=len, reverse=True))

    def add(self, secret: str) -> None:
        if len(secret) >= MIN_SECRET_LEN and secret not in self._secrets:
            self.update((*self._secrets, secret))

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        # Every pattern needs one of ":", "=" or "bearer": most details ("200
        # in 4 ms") have none, and skipping four regexes was 2 % of the CPU
        # per run at 1000 runs/s (bench/daemon.py).
        if ":" in value or "=" in value or "earer" in value.lower():
            for pattern, replacement in _PATTERNS:
                value = pattern.sub(replacement, value)
        return value

    def value(self, value: object) -> object:
        """Redact strings inside dicts, lists and tuples too."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value
