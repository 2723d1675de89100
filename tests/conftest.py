import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "adapters.toml"

# Tests run with the repository's adapters.toml whatever the working directory.
os.environ.setdefault("ADAPTER_TUI_CONFIG", str(CONFIG))


@pytest.fixture
def registry():
    from adapters.registry import load_registry

    return load_registry(CONFIG)


@pytest.fixture
def python():
    return sys.executable
