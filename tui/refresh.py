"""A view that fails to refresh keeps what it showed and says so in one line; it never takes the
app down. The handlers that redraw from files (runs, queue, datasets) are wrapped in `guarded`."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from textual.widget import Widget


def _report(widget: Widget, what: str, exc: BaseException) -> None:
    first = (str(exc).splitlines() or [""])[0]
    widget.app.notify(f"{what} not refreshed ({exc.__class__.__name__}: {first}); it shows the last good view",
                      title="refresh failed", severity="error", timeout=8)


def guarded(what: str) -> Callable:
    """Wrap a refresh handler of a widget: an exception becomes one notification."""
    def wrap(handler: Callable) -> Callable:
        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(self: Widget, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(self, *args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - the point: one line, never a crash
                    _report(self, what, exc)
            return run_async

        @functools.wraps(handler)
        def run(self: Widget, *args: Any, **kwargs: Any) -> Any:
            try:
                return handler(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                _report(self, what, exc)
        return run
    return wrap
