"""The environment for servers the tests start that cannot run under libfaketime.

``tests/test_any_date.py`` reruns date-sensitive tests under libfaketime (``LD_PRELOAD`` +
``FAKETIME``). A child process inherits both: redis-server then dies at start
("libfaketime: Unexpected recursive calls to clock_gettime()", seen with libfaketime 0.9.10
and redis 7, see ``../shared/library-notes.md``). Such a server is infrastructure, not code
under test: it runs on the real clock. (dovecot and openssl run fine under it and keep it:
the TLS test's certificate must be valid on the client's clock.)
"""

from __future__ import annotations

import os

_FAKETIME_VARIABLES = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC",
                       "FAKETIME_NO_CACHE", "FAKETIME_TIMESTAMP_FILE")


def real_clock_env() -> dict[str, str]:
    """``os.environ`` without libfaketime's variables."""
    return {k: v for k, v in os.environ.items() if k not in _FAKETIME_VARIABLES}
