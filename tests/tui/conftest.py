"""Fixtures for the TUI tests (helpers live in tui_support)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_support import CONFIG, FakeBackend


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def backend(runs) -> FakeBackend:
    return FakeBackend(runs)


@pytest.fixture
def demo_config(tmp_path, runs) -> Path:
    """A copy of adapters.toml whose demo dataset exists (under tmp_path/runs/datasets/demo)."""
    import shutil

    config = tmp_path / "adapters.toml"
    shutil.copy(CONFIG, config)
    for part in ("train", "val"):
        (runs / "datasets" / "demo" / part).mkdir(parents=True)
    return config


@pytest.fixture
def app_factory(runs, backend, demo_config):
    from tui.app import make_app

    def factory(**kw):
        return make_app(runs, kw.pop("config", demo_config), poll=kw.pop("poll", False),
                        backend=kw.pop("backend", backend), bell=kw.pop("bell", False))
    return factory


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def` tests in a fresh event loop (no pytest-asyncio plugin needed)."""
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None
