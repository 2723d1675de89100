import importlib.util
import os
import sys

import pytest

from support import ROOT, make_synth

CONFIG = ROOT / "adapters.toml"

# A GPU machine runs `pytest -m cuda` with torch but without the UI packages: the TUI's tests
# are not even collected there.
collect_ignore = [] if importlib.util.find_spec("textual") else ["tui"]

# Tests run with the repository's adapters.toml whatever the working directory.
os.environ.setdefault("ADAPTER_TUI_CONFIG", str(CONFIG))


@pytest.fixture
def registry():
    from adapters.registry import load_registry

    return load_registry(CONFIG)


@pytest.fixture
def python():
    return sys.executable


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Three 64-sample train chunks and one val chunk at hidden 64 (and an LM head)."""
    return make_synth(tmp_path_factory.mktemp("tiny"), lm_head=True)
