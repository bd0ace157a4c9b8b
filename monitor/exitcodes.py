"""The exit statuses of every command (README, Command line).

One enum, so that `check`, `validate`, `run` and `demo` cannot drift apart and
a deploy gate can rely on the numbers.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    # check: verdict operational; validate: valid; run, demo: a clean stop
    OK = 0
    # check: verdict broken; run: the server cannot listen
    BROKEN = 1
    # check: verdict partial (levels 1-3 pass, level 4 fails)
    PARTIAL = 2
    # every command: a config (or command line) that cannot be used
    CONFIG = 3
    # check --duration: too few samples to decide
    INCONCLUSIVE = 4


# The check verdicts and their statuses.
VERDICT_EXIT = {
    "operational": ExitCode.OK,
    "broken": ExitCode.BROKEN,
    "partial": ExitCode.PARTIAL,
    "inconclusive": ExitCode.INCONCLUSIVE,
}
