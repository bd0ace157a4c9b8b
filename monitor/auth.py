"""Basic auth for the daemon's server, the way exporter-toolkit does it.

- bcrypt runs on one worker thread of its own, one check at a time: never
  on the event loop, and never on the default executor, where the probes'
  DNS lookups and aiohttp's response compression run (50 concurrent wrong
  passwords there made every probe of a hostname fail with ``dns``).
- An unknown user is checked against a dummy hash of the same cost, so a
  wrong user and a wrong password take the same time (no enumeration).
- Verified credentials are remembered for a while after their last use,
  keyed by a digest, so a 15 s scrape pays bcrypt once. Failures are not
  remembered: a flood of wrong passwords cannot push a good entry out.
- At most ``MAX_PENDING`` checks wait for the worker; beyond that the
  answer is 429 at once, so a flood queues nothing without bound (a
  credential verified before the flood keeps working from the cache).
- Passwords over 72 bytes (bcrypt's limit) and malformed headers are 401
  without any bcrypt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import bcrypt

# bcrypt ignores what lies past 72 bytes; the library refuses it.
MAX_PASSWORD_BYTES = 72
# Checks waiting for the worker; a few distinct logins at once is plenty
# (every scrape after the first comes from the cache).
MAX_PENDING = 8
# A verified credential is kept this long after its last use, and at most
# this many (only people holding a valid password can add one).
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 128


# "busy": too many checks wait for the worker; the server answers 429.
Verdict = Literal["ok", "denied", "busy"]


def hash_cost(hashed: str) -> int:
    """The cost of a bcrypt hash (``$2b$12$...`` -> 12)."""
    return int(hashed.split("$")[2])


class BasicAuth:
    def __init__(self, users: dict[str, str], *, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._cost = max(hash_cost(h) for h in users.values()) if users else 4
        self._dummy: bytes | None = None
        self._clock = clock
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._pending = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")

    def close(self) -> None:
        """Drop queued checks; a check under way finishes on its own (< 1 s)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def check(self, header: str | None) -> Verdict:
        """The verdict for an ``Authorization`` header value (None: absent)."""
        credentials = parse_basic(header)
        if credentials is None:
            return "denied"
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        if hashed is not None and self._cached(key):
            return "ok"
        if self._pending >= MAX_PENDING:
            return "busy"
        self._pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._worker, self._verify, password, hashed)
        finally:
            self._pending -= 1
        if ok and hashed is not None:
            self._remember(key)
            return "ok"
        return "denied"

    def _verify(self, password: bytes, hashed: bytes | None) -> bool:
        """On the worker thread: bcrypt against the user's hash, or the dummy."""
        if hashed is None:
            if self._dummy is None:  # one worker thread: no race
                self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(),
                                            bcrypt.gensalt(self._cost))
            bcrypt.checkpw(password, self._dummy)
            return False
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:  # validation checks hashes; never a 500 anyway
            return False

    def _cached(self, key: bytes) -> bool:
        now = self._clock()
        expiry = self._cache.get(key)
        if expiry is None:
            return False
        if expiry < now:
            del self._cache[key]
            return False
        self._cache[key] = now + CACHE_SECONDS
        self._cache.move_to_end(key)
        return True

    def _remember(self, key: bytes) -> None:
        self._cache[key] = self._clock() + CACHE_SECONDS
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """(user, password bytes) of a ``Basic`` header, or None when malformed
    (no scheme, bad base64, not UTF-8, no colon, a password over 72 bytes)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    encoded = password.encode("utf-8")
    if not colon or len(encoded) > MAX_PASSWORD_BYTES:
        return None
    return user, encoded
