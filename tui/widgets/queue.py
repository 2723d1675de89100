"""The queue's widgets: the table of jobs and the worker's status line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from common.text import printable
from engine.queue.progress import job_progress
from tui.widgets.leaderboard import STATE_STYLE

COLUMNS = ("id", "state", "level", "run", "epochs", "nproc", "gpus", "dataset", "error")
# With jobs on Slurm, each one's Slurm id, state and node too (before the error, which runs long).
SLURM_COLUMNS = COLUMNS[:-1] + ("slurm",) + COLUMNS[-1:]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _ago(stamp: Any) -> str:
    try:
        if isinstance(stamp, (int, float)):
            age = datetime.now().timestamp() - float(stamp)
        else:
            age = (datetime.now().astimezone() - datetime.fromisoformat(str(stamp))).total_seconds()
    except (TypeError, ValueError):
        return "?"
    return f"{max(0, int(age))}s ago"


def _gpu_list(gpus: Any) -> list[str]:
    """"0,1" -> ["0", "1"]; None, "" or garbage -> []."""
    if not isinstance(gpus, str):
        return []
    return [g.strip() for g in gpus.split(",") if g.strip()]


def gpus_text(job: Any) -> Text:
    """The GPUs a job holds (running: bold), or ran on (finished: dim); "—" for none (CPU)."""
    gpus = _gpu_list(_get(job, "gpus"))
    if not gpus:
        return Text("—", style="dim")
    return Text(",".join(gpus), style="bold cyan" if _get(job, "state") == "running" else "dim")


def nproc_text(job: Any) -> str:
    nproc = _get(job, "nproc")
    return str(nproc) if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 0 else "1"


def slurm_text(job: Any) -> Text:
    """'1234 RUNNING gpu01' for a job on Slurm, "—" for a local one."""
    parts = [str(_get(job, name)) for name in ("slurm_id", "slurm_state", "slurm_node") if _get(job, name)]
    if not parts:
        return Text("—", style="dim")
    return Text(printable(" ".join(parts)), style="bold cyan" if _get(job, "state") == "running" else "dim")


def worker_text(status: Any, jobs: list[Any] | None = None) -> Text:
    if status is None:
        return Text("worker: unknown (queue not available)", style="dim")
    if _get(status, "alive"):
        running = _get(status, "running") or []
        on = (f" · Slurm cluster {printable(str(_get(status, 'cluster') or '(unnamed)'))}"
              if _get(status, "backend") == "slurm" else "")
        text = (f"worker: alive{on} · pid {_get(status, 'pid')} on {_get(status, 'host')} · heartbeat "
                f"{_ago(_get(status, 'heartbeat'))} · running {', '.join(map(str, running)) or 'nothing'}")
        gpus = _gpu_list(_get(status, "gpus"))
        if gpus:
            held = {g for job in jobs or [] if _get(job, "state") == "running" for g in _gpu_list(_get(job, "gpus"))}
            free = [g for g in gpus if g not in held]
            text += f" · gpus {','.join(gpus)} (free: {','.join(free) or 'none'})"
        return Text(text, style="green")
    return Text("worker: not running (w starts one; queueing a job starts one)", style="yellow")


def gpus_use_text(status: Any) -> Text | None:
    """Each of the worker's GPUs' use at its last heartbeat (NVML): None when it has none."""
    stats = _get(status, "gpu_stats") or [] if status is not None else []
    parts = []
    for gpu in stats if isinstance(stats, list) else []:
        if not isinstance(gpu, dict):
            continue
        text = f"GPU {gpu.get('index', '?')}"
        if isinstance(gpu.get("gpu_util"), (int, float)):
            text += f" {gpu['gpu_util']:.0f}%"
        if isinstance(gpu.get("gpu_mem_used_mb"), (int, float)) and isinstance(gpu.get("gpu_mem_total_mb"), (int, float)):
            text += f" {gpu['gpu_mem_used_mb'] / 1024:.1f}/{gpu['gpu_mem_total_mb'] / 1024:.0f} GB"
        if isinstance(gpu.get("gpu_power_w"), (int, float)):
            text += f" {gpu['gpu_power_w']:.0f} W"
        parts.append(text)
    return Text(" · ".join(parts), style="cyan") if parts else None


def jobs_progress(jobs: list[Any]) -> dict[int, str]:
    """{job id: "done/total samples"} of the extraction jobs and "done/total prompts, τ" of the
    speculation jobs, from the files they write (file reads: call it off the UI thread)."""
    progress = {_get(job, "id"): job_progress(_get(job, "settings")) for job in jobs}
    return {job_id: text for job_id, text in progress.items() if text is not None}


class JobsTable(DataTable):
    """Every job of the queue, the selected one kept across refreshes."""

    columns_shown: tuple[str, ...] = ()

    def on_mount(self) -> None:
        self._set_columns(COLUMNS)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        self.columns_shown = columns
        for column in columns:
            self.add_column(column, key=column)

    @property
    def selected_id(self) -> int | None:
        if self.row_count == 0:
            return None
        key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return int(key.value)

    def set_jobs(self, jobs: list[Any], progress: dict[int, str] | None = None) -> None:
        """`progress`: what an extraction job has done (its "epochs" cell)."""
        rows: dict[str, tuple] = {}
        jobs_by_key: dict[str, Any] = {}
        for job in jobs:
            key = str(_get(job, "id"))
            if key in rows:  # one row per job, whatever the list holds
                continue
            rows[key] = self._cells(job, progress)
            jobs_by_key[key] = job
        selected = self.selected_id
        columns = SLURM_COLUMNS if any(_get(job, "slurm_id") for job in jobs) else COLUMNS
        if columns != self.columns_shown:
            self.clear(columns=True)
            self._set_columns(columns)
        else:
            self.clear()
        for key, cells in rows.items():
            if columns is SLURM_COLUMNS:
                cells = cells[:-1] + (slurm_text(jobs_by_key[key]),) + cells[-1:]
            self.add_row(*cells, key=key)
        if selected is not None and str(selected) in self.rows:
            self.move_cursor(row=self.get_row_index(str(selected)), animate=False)

    @staticmethod
    def _cells(job: Any, progress: dict[int, str] | None) -> tuple:
        args = _get(job, "settings") or {}
        state = str(_get(job, "state"))
        pos = _get(job, "position")
        label = f"{state} #{pos}" if state == "queued" and pos else state
        run = _get(job, "run_dir") or ""
        dataset = str(_get(job, "dataset") or args.get("train_data", "") or "")
        if "/" in dataset:  # a path: its last two parts say enough (demo/train)
            dataset = "/".join(dataset.rstrip("/").split("/")[-2:])
        epochs = (progress or {}).get(_get(job, "id"), str(args.get("num_epochs", "")))
        error = " ".join(str(_get(job, "error") or "").split())
        return (str(_get(job, "id")), Text(label, style=STATE_STYLE.get(state, "")), str(_get(job, "level")),
                Text(printable(run.rstrip("/").rsplit("/", 1)[-1])), epochs, nproc_text(job), gpus_text(job),
                Text(printable(dataset)), Text(printable(error), style="red"))
