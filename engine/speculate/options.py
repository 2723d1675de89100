"""The speculation's options, torch-free: the command line, what a queue job stores, and how
to read a job's progress. The command, the queue worker and the app import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from common.fileio import ReadError, read_json
from engine.extract.options import MODEL_DTYPES
from engine.job_options import as_argv, from_stored
from engine.rundir.layout import CONFIG
from engine.rundir.speculation import progress_text, read_progress

JOB_KIND = "speculate"  # a queue job's settings: {"kind": "speculate", "options": {...}}
MAX_GAMMA = 32


def parse_gammas(text: str) -> tuple[int, ...]:
    """"5" or "1,3,5,8": each a draft length from 1 to MAX_GAMMA, in the order given, once."""
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UserInputError(f"--gamma {text!r}: give a draft length or a list, e.g. --gamma 5 or --gamma 1,3,5,8") \
            from None
    if not values or any(not 1 <= v <= MAX_GAMMA for v in values):
        raise UserInputError(f"--gamma {text!r}: each draft length must be from 1 to {MAX_GAMMA}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class SpeculateOptions:
    run: str                          # the run directory (its best checkpoint) or a checkpoint file
    drafter: str
    verifier: str
    prompts: str
    layer: int = -1
    drafter_layers: int | None = None  # self-speculation: the drafter is the first K decoder layers
    gamma: str = "5"
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    samples: int | None = None
    warmup: int = 2
    device: str = "auto"
    dtype: str = "fp32"
    max_prompt_tokens: int = 256
    trust_remote_code: bool = False

    @property
    def gammas(self) -> tuple[int, ...]:
        return parse_gammas(self.gamma)

    def problem(self) -> str | None:
        try:
            self.gammas
        except UserInputError as exc:
            return str(exc)
        for name, low in (("max_new_tokens", 1), ("warmup", 0), ("max_prompt_tokens", 1)):
            if getattr(self, name) < low:
                return f"--{name} must be >= {low}, got {getattr(self, name)}"
        if self.samples is not None and self.samples < 1:
            return f"--samples must be >= 1, got {self.samples}"
        if self.drafter_layers is not None and self.drafter_layers < 1:
            return f"--drafter_layers must be >= 1, got {self.drafter_layers}"
        if not 0 <= self.temperature < float("inf"):
            return f"--temperature must be 0 (greedy) or more, got {self.temperature}"
        if self.dtype not in MODEL_DTYPES:
            return f"--dtype must be one of {', '.join(MODEL_DTYPES)}, got {self.dtype!r}"
        return None

    def absolute(self) -> "SpeculateOptions":
        """Paths made absolute (a queue worker may run elsewhere); hub model names kept."""
        def local(name: str) -> str:
            return str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name
        return SpeculateOptions(**{**asdict(self), "run": str(Path(self.run).expanduser().resolve()),
                                   "drafter": local(self.drafter), "verifier": local(self.verifier),
                                   "prompts": str(Path(self.prompts).expanduser().resolve())})

    def settings(self) -> dict[str, Any]:
        """What speculate.json records of how it measured."""
        keep = ("layer", "drafter_layers", "max_new_tokens", "temperature", "seed", "samples", "warmup", "dtype",
                "max_prompt_tokens")
        return {**{k: getattr(self, k) for k in keep}, "gammas": list(self.gammas)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "SpeculateOptions":
        """A queue job's stored options; UserInputError for anything else."""
        return from_stored(cls, data, ("run", "drafter", "verifier", "prompts"), "--speculate")

    def as_argv(self) -> list[str]:
        """`adapter-engine speculate` arguments that give these options back (--layer always:
        left out, it would be taken from the run's extraction)."""
        return as_argv(self, SpeculateOptions("", "", "", ""), ("drafter", "verifier", "prompts"), "run",
                       always=("layer",))

    def run_dir(self) -> Path:
        path = Path(self.run)
        return path if path.is_dir() or not path.suffix else path.parent


def job_progress(settings: Any) -> str | None:
    """A speculation job's progress from its run directory ("" before it reports); None for
    other jobs."""
    if not isinstance(settings, dict) or settings.get("kind") != JOB_KIND:
        return None
    run = (settings.get("options") or {}).get("run")
    if not isinstance(run, str) or not run:
        return ""
    path = Path(run)
    return progress_text(read_progress(path if path.is_dir() else path.parent))


def extraction_of(run: str | Path) -> dict[str, Any]:
    """What `extract` recorded of the run's training data (drafter, verifier, prompts, layer,
    drafter_layers), so `speculate RUN` measures on the models the adapter was trained for; {}
    when the run's data was not extracted (synthetic data, the reference's files)."""
    path = Path(run)
    run_dir = path if path.is_dir() else path.parent
    try:
        settings = read_json(run_dir / CONFIG).get("settings") or {}
        train = Path(settings["train_data"])
        extraction = read_json((train if train.is_dir() else train.parent) / "index.json").get("extraction")
    except (ReadError, AttributeError, KeyError, TypeError, OSError):
        return {}
    if not isinstance(extraction, dict):
        return {}
    keep = {"drafter": str, "verifier": str, "prompts": str, "layer": int, "drafter_layers": int}
    return {k: extraction[k] for k, kind in keep.items() if isinstance(extraction.get(k), kind)
            and not isinstance(extraction.get(k), bool)}
