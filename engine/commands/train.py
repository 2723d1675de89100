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


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and `queue add`. Defaults of None mean "the level's default"."""
    seed = p.add_argument_group("seed-compatible flags")
    seed.add_argument("--train_data", help="chunked dataset directory or single .pt file")
    seed.add_argument("--val_data", help="validation data (default: hold out --val_split of the samples of a "
                                         "one-chunk set or file, or whole chunks of a larger set)")
    seed.add_argument("--val_split", type=float, default=0.1, help="fraction held out without --val_data (0.1)")
    seed.add_argument("--output_dir", default=None,
                      help="seed commands: the run goes straight into OUTPUT_DIR/<prefix>_<time>; with --level: "
                           "the runs directory, like --runs")
    seed.add_argument("--adapter_level", type=int, choices=range(1, 7), metavar="{1..6}",
                      help="seed level number: 1=L1 ... 5=L5 (with --vlm_only: B1), 6=L5F; the default (1) when "
                           "no --level is given. Flags left out take the reference's defaults")
    seed.add_argument("--vlm_only", action="store_true", help="train on verifier states (B1 with level 5)")
    seed.add_argument("--hidden_dim", type=int, help="must match the data if given (the data decides)")
    for name in ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim"):
        seed.add_argument(f"--{name}", type=int,
                          help="architecture (default: the level's in adapters.toml; the reference's for seed commands)")
    seed.add_argument("--num_epochs", type=int, help="epochs (default: the level's; 50 for seed commands)")
    seed.add_argument("--batch_size", type=int, help="batch size (default: the level's; 64 for seed commands)")
    seed.add_argument("--learning_rate", type=float, help="AdamW learning rate (default: the level's; 1e-3 for seed "
                                                          "commands)")
    seed.add_argument("--early_stopping", type=int, help="patience in epochs, 0 = off (default: the level's; 10 "
                                                         "for seed commands)")
    ours = p.add_argument_group("adapter-tui flags")
    ours.add_argument("--level", help="any level key of adapters.toml (e.g. L4, B1, L4-2L); its defaults apply")
    ours.add_argument("--dataset", help="a dataset name of adapters.toml [datasets] (e.g. demo)")
    ours.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ours.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ours.add_argument("--lm_head", help="verifier LM head .pt: a tensor [V, H], or the reference's "
                                        "extract_vl_lm_head.py file; enables token metrics")
    ours.add_argument("--init_from", metavar="CKPT|RUN_DIR",
                      help="start from these weights (ours or the reference's checkpoint, or a run directory's "
                           "best_model.pt); a fresh optimizer and schedule")
    ours.add_argument("--config", help="adapters.toml to read (default: ./adapters.toml)")
    ours.add_argument("--no_eval", action="store_true", help="skip the speculative-decoding eval at the end")
    ours.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                      help="auto = bf16 autocast on CUDA, fp32 on CPU")
    ours.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; slow first epoch)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one adapter into a live run directory", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_flags(p)
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
    from engine.settings import resolve
    from engine.train import prepare, read_resume, run_training

    if args.nproc < 1:
        raise UserInputError(f"--nproc must be >= 1, got {args.nproc}")
    resume_dir = Path(args.resume) if args.resume else None
    resume_state = None
    if resume_dir is not None:
        settings, resume_state = read_resume(resume_dir)
    else:
        settings, _ = resolve(args)
    if args.nproc > 1 and not launched_by_torchrun():
        prepare(settings, resume_state)  # bad input fails here, once, with exit 2, not in every rank
        relaunch_under_torchrun(args.argv, args.nproc)  # does not return
    return run_training(settings, resume_dir=resume_dir, argv=["adapter-engine", *args.argv], resume_state=resume_state)
