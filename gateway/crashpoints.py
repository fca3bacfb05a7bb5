"""Named crash points: places where a test may have the process killed outright.

``crash_point("sftp.after_rename")`` does nothing unless the environment variable
``GATEWAY_CRASH_AT`` names that point when this module is first imported; then the process
sends itself SIGKILL there (no ``finally``, no ``atexit``, no flush: what a power cut or the
OOM killer leaves). ``name@N`` kills at the Nth time the point is reached (counted per
process), so a test can let a batch get half way. The variable is read once, at import: a
process without it pays one dictionary lookup per point.

The points (each is one line in the code it names):

====================================  ==========================================================
``sftp.before_upload``                adapters/sftp/upload.py, before a batch file goes up
``sftp.after_rename``                 the same, once a file is under its final remote name
``dispatch.after_agency_ok``          gateway/dispatch/dispatcher.py, an agency answered 2xx and
                                      we have not recorded it
``dispatch.before_outcome_commit``    gateway/dispatch/records.py, outcomes written, not committed
``inbound.after_store``               gateway/inbound/service.py, messages committed, no 2xx sent
``reconcile.before_checkpoint``       gateway/reconciliation/engine.py, a pass done, its breaks
                                      and checkpoint not committed
====================================  ==========================================================
"""

import os
import signal

ENV = "GATEWAY_CRASH_AT"


def _parse(value: str) -> tuple[str, int] | None:
    name, _, nth = value.strip().partition("@")
    if not name:
        return None
    return name, int(nth) if nth else 1


_armed = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``GATEWAY_CRASH_AT`` names ``name`` (at its Nth hit)."""
    if _armed is None or _armed[0] != name:
        return
    _hits[name] = hit = _hits.get(name, 0) + 1
    if hit >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "crash_point"]
