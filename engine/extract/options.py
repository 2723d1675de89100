"""The extraction's contract, torch-free: its options (the command line, and what a queue job
stores), the files it writes beside the dataset, and how to read its progress. The command,
the queue worker and the app import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.fileio import ReadError, read_json
from common.names import is_safe_name
from common.text import plural
from engine.job_options import as_argv, from_stored
from engine.rundir.layout import EXTRACT_STATUS

MODEL_DTYPES = ("fp32", "bf16", "fp16")
STORES = ("fp32", "bf16")
FORMATS = ("chunked", "packed")
STATE = ".extract-state.json"       # what is done, to resume (removed when the extraction ends)
STATUS = EXTRACT_STATUS              # progress: state, samples_done/samples_total, alignment rate
LOCK = ".extract.lock"              # one extraction per OUT
LM_HEAD = "lm_head.pt"              # the verifier's output projection, {"lm_head_weight": [V, H]}
SPLITS = ("train", "val")
JOB_KIND = "extract"                # a queue job's settings: {"kind": "extract", "options": {...}}


@dataclass(frozen=True)
class ExtractOptions:
    drafter: str
    verifier: str
    prompts: str
    out: str
    layer: int = -1
    drafter_layers: int | None = None  # self-speculation: the drafter is its model's first K decoder layers
    max_seq: int = 256
    samples: int | None = None
    batch_size: int = 8
    chunk_size: int = 256
    dtype: str = "fp32"
    store: str = "fp32"
    device: str = "auto"
    val_split: float = 0.1
    seed: int = 0
    format: str = "chunked"
    trust_remote_code: bool = False
    register: str | None = None     # name a [datasets] entry of adapters.toml once done
    config: str | None = None       # that adapters.toml (default: the project's)

    def problem(self) -> str | None:
        for name, low in (("max_seq", 1), ("batch_size", 1), ("chunk_size", 1)):
            if getattr(self, name) < low:
                return f"--{name} must be >= {low}, got {getattr(self, name)}"
        if self.drafter_layers is not None and self.drafter_layers < 1:
            return f"--drafter_layers must be >= 1, got {self.drafter_layers}"
        if self.samples is not None and self.samples < 2:
            return f"--samples must be >= 2 (one at least for validation), got {self.samples}"
        if not 0 < self.val_split < 1:
            return f"--val_split must be between 0 and 1, got {self.val_split}"
        for name, allowed in (("dtype", MODEL_DTYPES), ("store", STORES), ("format", FORMATS)):
            if getattr(self, name) not in allowed:
                return f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
        if self.register is not None and not is_safe_name(self.register):
            return f"--register {self.register!r} is not a safe dataset name (letters, digits, '_' and '-')"
        return None

    def what(self, prompts_sha: str) -> dict[str, Any]:
        """What decides the data (not the device or batch size): a resume must match it."""
        keep = ("drafter", "verifier", "layer", "max_seq", "samples", "chunk_size", "dtype", "store", "val_split",
                "seed", "format")
        early_exit = {} if self.drafter_layers is None else {"drafter_layers": self.drafter_layers}  # older states lack it
        return {**{k: getattr(self, k) for k in keep}, **early_exit, "prompts": str(Path(self.prompts).resolve()),
                "prompts_sha256": prompts_sha}

    def absolute(self) -> "ExtractOptions":
        """Paths made absolute (a queue worker may run elsewhere); hub model names kept."""
        def local(name: str) -> str:
            return str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name
        return ExtractOptions(**{**asdict(self), "drafter": local(self.drafter), "verifier": local(self.verifier),
                                 "prompts": str(Path(self.prompts).expanduser().resolve()),
                                 "out": str(Path(self.out).expanduser().resolve()),
                                 "config": str(Path(self.config).resolve()) if self.config else None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ExtractOptions":
        """A queue job's stored options; UserInputError for anything else."""
        return from_stored(cls, data, ("drafter", "verifier", "prompts", "out"), "--extract")

    def as_argv(self) -> list[str]:
        """`adapter-engine extract` arguments that give these options back."""
        return as_argv(self, ExtractOptions("", "", "", ""), ("drafter", "verifier", "prompts"), "out")


def read_status(out: str | Path) -> dict[str, Any] | None:
    """OUT's extract_status.json, or None when it is missing or garbage."""
    try:
        status = read_json(Path(out) / STATUS)
    except ReadError:
        return None
    return status if isinstance(status, dict) else None


def job_progress(settings: Any) -> str | None:
    """An extraction job's progress from its OUT ("" before it reports); None for other jobs."""
    if not isinstance(settings, dict) or settings.get("kind") != JOB_KIND:
        return None
    out = (settings.get("options") or {}).get("out")
    return progress_text(read_status(out)) if isinstance(out, str) and out else ""


def progress_text(status: dict[str, Any] | None) -> str:
    """"120/500 samples" (and the alignment rate once known)."""
    if not status:
        return ""
    done, total = status.get("samples_done"), status.get("samples_total")
    if not isinstance(done, int) or not isinstance(total, int):
        return ""
    text = f"{done}/{plural(total, 'sample')}"
    rate = status.get("alignment_rate")
    if isinstance(rate, (int, float)) and rate < 1:
        text += f", {rate:.0%} aligned"
    return text
