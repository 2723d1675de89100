"""Redraws at a capped rate: plots are costly, and a burst of updates should draw once."""

from __future__ import annotations

import time

from textual.timer import Timer

MIN_REDRAW_S = 0.25  # at most about 4 redraws a second


class ThrottledRedraw:
    """Mixin for a widget: `request_redraw()` schedules `redraw()` at most every MIN_REDRAW_S;
    requests in between collapse into the scheduled one. `redraws` counts draws (tests)."""

    redraws: int = 0
    _last_draw: float = 0.0
    _timer: Timer | None = None

    def request_redraw(self) -> None:
        if self._timer is not None:
            return
        delay = max(0.01, self._last_draw + MIN_REDRAW_S - time.monotonic())
        self._timer = self.set_timer(delay, self._fire)  # type: ignore[attr-defined]

    def _fire(self) -> None:
        self._timer = None
        self._last_draw = time.monotonic()
        self.redraws += 1
        self.redraw()

    def redraw(self) -> None:  # pragma: no cover
        raise NotImplementedError
