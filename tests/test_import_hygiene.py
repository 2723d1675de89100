"""Imports point one way (docs/ARCHITECTURE.md): the app, the queue, the run-directory contract,
the settings and the bottom package never load torch; the engine and the zoo never load a UI
toolkit; and no package imports one above it (the import-linter contracts in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI = ("textual", "plotext", "textual_plotext")
TORCH_FREE = ("tui", "engine/queue", "engine/rundir", "common")
TORCH_FREE_MODULES = ("engine.settings", "engine.cli", "engine.extract.options", "engine.extract.prompts",
                      "engine.extract.align", "adapters", "adapters.registry", "adapters.seed",
                      "adapters.zoo")


def modules_under(package_dir: str) -> list[str]:
    base = ROOT / package_dir
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in base.rglob("*.py") if p.name != "__main__.py")


def first_to_load(modules: list[str], unwanted: tuple[str, ...]) -> str | None:
    """Imports `modules` one by one in a fresh interpreter; the first after which one of
    `unwanted` is loaded, or None."""
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            f"    if any(u in sys.modules for u in {unwanted!r}):\n"
            "        print(name); break\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() or None


def test_every_module_of_the_app_the_queue_and_the_contract_is_torch_free():
    modules = [m for d in TORCH_FREE for m in modules_under(d)] + list(TORCH_FREE_MODULES)
    assert len(modules) > 40  # the walk found the packages
    assert first_to_load(modules, ("torch",)) is None


def test_the_engine_and_the_zoo_never_load_a_ui_toolkit():
    modules = [m for d in ("adapters", "engine", "common") for m in modules_under(d)]
    assert first_to_load(modules, UI) is None


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
