"""`adapter-engine train`: the seed's flags verbatim, plus --level, --dataset, --seed, --device,
--resume, --init_from and --lm_head."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """Train one adapter level. Two ways to name it:
  --level KEY        any level of adapters.toml; its defaults fill every flag left out.
  --adapter_level N  the seed's own flag (and the default, 1, when no --level is given): the level
                     as the reference builds it, and the reference's defaults for every flag left
                     out (50 epochs, batch 64, lr 1e-3, early stopping 10, 3 blocks, 8 heads,
                     1 layer, FFN 2048, bottleneck 256 or 1024 for level 3, val split 0.1).
Seed commands run with only the script name changed: with --output_dir D the run is
D/<L1..L5|L5F|B1>_<YYYYmmdd_HHMMSS>, as the reference writes it. Otherwise runs go to
RUNS/<LEVEL>/<LEVEL>_<YYYYmmdd_HHMMSS>/ (--runs, default ./runs)."""


def register(sub: argparse._SubParsersAction) -> None:
    from engine.settings import add_train_flags

    p = sub.add_parser("train", help="train one adapter into a live run directory", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_flags(p)
    p.add_argument("--settings", metavar="FILE", help=argparse.SUPPRESS)  # a queue job's settings (JSON)
    p.add_argument("--runs", metavar="DIR", help="runs directory: the run is DIR/<LEVEL>/<LEVEL>_<time> (default runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last.pt (other flags are ignored)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine, started through torchrun (default 1)")
    p.set_defaults(func=run)


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def relaunch_under_torchrun(argv: list[str], nproc: int) -> None:
    """Replace this process with torchrun running `-m engine ARGV` as N ranks, so signals sent
    to this pid reach torchrun, which forwards them to every rank."""
    import os

    from engine.launch import torchrun_command

    sys.stdout.flush()
    os.execv(sys.executable, torchrun_command(nproc, without_nproc(argv)))


def run(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.distributed import launched_by_torchrun
    from engine.settings import resolve, settings_file
    from engine.inputs import prepare, read_resume
    from engine.train import run_training

    if args.nproc < 1:
        raise UserInputError(f"--nproc must be >= 1, got {args.nproc}")
    resume_dir = Path(args.resume) if args.resume else None
    resume_state = None
    if resume_dir is not None:
        settings, resume_state = read_resume(resume_dir)
    elif args.settings:
        settings = settings_file(Path(args.settings))
    else:
        settings, _ = resolve(args)
    if args.nproc > 1 and not launched_by_torchrun():
        prepare(settings, resume_state)  # bad input fails here, once, with exit 2, not in every rank
        relaunch_under_torchrun(args.argv, args.nproc)  # does not return
    return run_training(settings, resume_dir=resume_dir, argv=["adapter-engine", *args.argv], resume_state=resume_state)
