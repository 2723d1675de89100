"""The TUI never pays for torch; the engine and the zoo never pull in a UI toolkit."""

import subprocess
import sys

import pytest

UI = ("textual", "plotext", "textual_plotext")


def loaded_after(import_line: str) -> set[str]:
    code = f"import sys; {import_line}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["adapters", "adapters.registry", "engine", "engine.cli"])
def test_core_never_imports_ui(module):
    assert not (loaded_after(f"import {module}") & set(UI))


@pytest.mark.parametrize("module", ["adapters.attention", "adapters.checkpoint"])
def test_models_never_import_ui(module):
    assert not (loaded_after(f"import {module}") & set(UI))


@pytest.mark.parametrize("module", ["tui", "adapters.registry", "engine.fileio"])
def test_tui_side_never_imports_torch(module):
    assert "torch" not in loaded_after(f"import {module}")

