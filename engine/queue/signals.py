"""Signalling a trainer's process group (it runs in its own session, so pgid == its pid)."""

from __future__ import annotations

import os
import signal


def terminate_group(pgid: int, kill: bool = False) -> bool:
    """SIGTERM (or SIGKILL) the process group `pgid`. Returns False if it no longer exists."""
    try:
        os.killpg(pgid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True
