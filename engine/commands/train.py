"""`adapter-engine train`: the seed's flags verbatim, plus --level, --dataset, --seed, --device,
--resume and --lm_head."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and `queue add`. Defaults of None mean "the level's default"."""
    seed = p.add_argument_group("seed-compatible flags")
    seed.add_argument("--train_data", help="chunked dataset directory or single .pt file")
    seed.add_argument("--val_data", help="validation data (default: hold out the last chunk / --val_split)")
    seed.add_argument("--val_split", type=float, default=0.1, help="fraction held out of a single .pt file (0.1)")
    seed.add_argument("--output_dir", default="runs", help="runs directory (default: runs)")
    seed.add_argument("--adapter_level", type=int, choices=range(1, 7), metavar="{1..6}",
                      help="seed level number: 1=L1 ... 5=L5 (with --vlm_only: B1), 6=L5F")
    seed.add_argument("--vlm_only", action="store_true", help="train on verifier states (B1 with level 5)")
    seed.add_argument("--hidden_dim", type=int, help="must match the data if given (the data decides)")
    for name in ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim"):
        seed.add_argument(f"--{name}", type=int, help="architecture override (default: adapters.toml)")
    seed.add_argument("--num_epochs", type=int, help="epochs (default: the level's)")
    seed.add_argument("--batch_size", type=int, help="batch size (default: the level's)")
    seed.add_argument("--learning_rate", type=float, help="AdamW learning rate (default: the level's)")
    seed.add_argument("--early_stopping", type=int, help="patience in epochs, 0 = off (default: the level's)")
    ours = p.add_argument_group("adapter-tui flags")
    ours.add_argument("--level", help="any level key of adapters.toml (e.g. L4, B1, L4-2L)")
    ours.add_argument("--dataset", help="a dataset name of adapters.toml [datasets] (e.g. demo)")
    ours.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ours.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ours.add_argument("--lm_head", help="verifier LM head .pt [V, H] for the token-match metric")
    ours.add_argument("--config", help="adapters.toml to read (default: ./adapters.toml)")
    ours.add_argument("--no_eval", action="store_true", help="skip the speculative-decoding eval at the end")
    ours.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                      help="auto = bf16 autocast on CUDA, fp32 on CPU")
    ours.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; slow first epoch)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one adapter into a live run directory",
                       description="Train one adapter level. Seed commands run with only the script name changed.")
    add_train_flags(p)
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
    from adapters.errors import UserInputError
    from engine.distributed import launched_by_torchrun
    from engine.fileio import ReadError, read_json
    from engine.rundir import CONFIG
    from engine.settings import TrainSettings, resolve
    from engine.train import prepare, run_training

    if args.nproc < 1:
        raise UserInputError(f"--nproc must be >= 1, got {args.nproc}")
    resume_dir = Path(args.resume) if args.resume else None
    if resume_dir is not None:
        try:
            settings = TrainSettings.from_dict(read_json(resume_dir / CONFIG)["settings"])
        except (ReadError, KeyError, TypeError) as exc:
            raise UserInputError(f"--resume {resume_dir}: not a resumable run directory ({exc})") from None
    else:
        settings, _ = resolve(args)
    if args.nproc > 1 and not launched_by_torchrun():
        prepare(settings)  # bad input fails here, once, with exit 2, not in every rank
        relaunch_under_torchrun(args.argv, args.nproc)  # does not return
    return run_training(settings, resume_dir=resume_dir, argv=["adapter-engine", *args.argv])
