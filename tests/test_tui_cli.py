"""`adapter-tui` input errors: one line on stderr and exit 2, before the screen is taken."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("text, needle", [("[levels\n", "not valid TOML"), (None, "not found")])
def test_tui_refuses_a_broken_config_in_one_line(tmp_path, text, needle):
    config = tmp_path / "adapters.toml"
    if text is not None:
        config.write_text(text)
    out = subprocess.run([sys.executable, "-m", "tui", "--config", str(config)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1
