"""torchrun for `train --nproc N` and multi-GPU queue jobs: PyTorch's own launcher, minus the
traceback it prints when a signal stops it. By then it has already forwarded the signal, the
ranks have saved last.pt and marked the run cancelled, so the traceback is only noise."""

from __future__ import annotations

import sys


def torchrun_command(nproc: int, engine_argv: list[str]) -> list[str]:
    """argv that runs `python -m engine ENGINE_ARGV` as `nproc` ranks on this machine."""
    return [sys.executable, "-m", "engine.launch", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "engine", *engine_argv]


def main() -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun()  # reads sys.argv like the torchrun command
    except SignalException as exc:
        return 128 + int(exc.sigval)  # the shell's convention for "ended by signal N"
    return 0


if __name__ == "__main__":
    sys.exit(main())
