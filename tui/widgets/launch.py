"""The launch form: levels (with parameter counts at the dataset's hidden size), a dataset
(named or a typed path, validated in a worker upstream), the training fields prefilled from the
level's defaults and validated, architecture overrides under an "advanced" fold, and after a
fork the choice to start from the forked run's weights. The fields, their labels and their checks
come from engine.settings.FIELDS, as `queue add`'s flags do; a request goes to the engine's own
planning (`queue add`), upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.timer import Timer
from textual.validation import Integer, ValidationResult, Validator
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from adapters import seed
from adapters.registry import LevelSpec, Registry
from common.errors import UserInputError
from common.text import plural, widths_text
from engine.queue.sweep import parse_axis
from engine.settings import ARCH_FIELDS, FIELD, TRAIN_FIELDS, Field
from tui.data import fmt_int

CUSTOM = "__path__"
DEFAULT_HIDDEN = 4096
RUN_FIELDS = ("seed", "device", "precision")  # one value for every level queued
SWEEP_FIELDS = ("learning_rate", "batch_size", "num_epochs", "early_stopping", "seed")


class FieldCheck(Validator):
    """A form field checked as its flag is (engine.settings.Field)."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        try:
            parsed = self.field.parse(value.strip())
        except ValueError:
            return self.failure("must be an integer" if self.field.kind is int else "must be a number")
        problem = self.field.problem(parsed)
        return self.failure(problem.replace(f"{self.field.flag()} ", "")) if problem else self.success()


@dataclass
class LaunchRequest:
    """What `queue add` gets: these levels, these fields (the others take each level's defaults)."""

    levels: list[str]
    fields: dict[str, Any]  # training fields as typed values, train_data/val_data for a typed path
    front: bool
    dataset: str | None     # a named dataset of adapters.toml
    sweep: list[str] = field(default_factory=list)  # `queue add --sweep` axes, "learning_rate=1e-4,1e-3"
    sweep_random: int | None = None                 # --sweep-random N


class SweepCheck(Validator):
    """A sweep field: values (1e-4,3e-4) or a range (1e-5:1e-2), checked as `queue add --sweep` does."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_axis(f"{self.name}={value.strip()}")
        except UserInputError as exc:
            return self.failure(str(exc).replace("--sweep: ", ""))
        return self.success()


class LaunchSelect(Select):
    """A Select that tolerates the app quitting while it mounts: the Launch tab is mounted late
    (lazily), and teardown can remove a Select's parts before its mount handler looks for them."""

    def _setup_options_renderables(self) -> None:
        try:
            super()._setup_options_renderables()
        except NoMatches:
            torn_down = self._closing or getattr(self, "_pruning", False) or not self.is_attached
            if not torn_down and self.app.is_running:
                raise


class LaunchForm(VerticalScroll):
    """The form. It validates what it can itself (each field as its flag is checked); what
    needs the engine (inspecting a dataset, counting parameters) it asks upward with messages.
    The actions (start now, add, preset) are the pane's, below the form."""

    DEFAULT_CSS = """
    LaunchForm { height: 1fr; padding: 0 1; }
    LaunchForm #first-run { display: none; border: round $warning; padding: 0 1; height: auto; }
    LaunchForm.-first-run #first-run { display: block; }
    LaunchForm #first-run Button { width: auto; }
    LaunchForm .section { text-style: bold; color: $accent; margin-top: 1; }
    LaunchForm #levels { height: auto; max-height: 9; }
    LaunchForm #level-info, LaunchForm #data-info { height: auto; color: $text-muted; }
    LaunchForm .row { height: auto; }
    LaunchForm .field { width: 1fr; height: auto; margin-right: 1; }
    LaunchForm Input { margin-right: 1; }
    LaunchForm .field Label { color: $text-muted; }
    LaunchForm .field Input { width: 1fr; }
    LaunchForm #dataset { width: 16; margin-right: 1; }
    LaunchForm #data-path, LaunchForm #val-path { width: 1fr; }
    LaunchForm #init-from { display: none; height: auto; }
    LaunchForm.-forked #init-from { display: block; }
    """

    @dataclass
    class DatasetChanged(Message):
        """A train path to inspect (in a worker upstream)."""
        path: str

    @dataclass
    class ParamsWanted(Message):
        widths: tuple[int, int]  # (drafter Hd, verifier Hv)

    class DemoRequested(Message):
        """Create the demo dataset and train L1 on it."""

    def __init__(self, registry: Registry | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.registry = registry
        self.widths = (DEFAULT_HIDDEN, DEFAULT_HIDDEN)  # (Hd, Hv) the counts are at: the dataset's, once inspected
        self.params: dict[str, int] = {}
        self._prefill: dict[str, str] = {}
        self._inspect_timer: Timer | None = None
        self.dataset_ok: bool | None = None
        self.forked_from: str | None = None  # the run directory a fork came from
        self._picked_dataset: str | None = None  # the named dataset picked before adapters.toml changed
        self._recomposing = False

    def _settled(self) -> bool:
        """False while the form is rebuilt (adapters.toml changed) or the app quits: its fields
        may be gone, and what a handler would update is about to be replaced."""
        return self.app.is_running and not self._recomposing

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        levels = self.registry.levels if self.registry else {}
        with VerticalScroll(id="first-run"):
            yield Static("No dataset found. Press [b]Enter[/b] to create the demo dataset "
                         "(adapter-engine synth) and train L1 on it; curves appear in the Runs tab.")
            yield Button("Create demo data & train L1", id="demo", variant="warning")
            yield Static(id="synth-progress")
        yield Label("Levels (space selects; several queue one job each)", classes="section")
        yield SelectionList[str](*[Selection(self._level_prompt(k), k, id=k) for k in levels], id="levels")
        yield Static(id="level-info")
        yield Label("Hyperparameters (prefilled from the level's defaults)", classes="section")
        with Horizontal(classes="row"):
            for name in TRAIN_FIELDS:
                yield from self._field(name)
        with Horizontal(classes="row"):
            for name in RUN_FIELDS:
                yield from self._field(name, placeholder=str(FIELD[name].default), valid_empty=True)
        yield Label("Dataset (named in adapters.toml, or type a path: validated as you type)", classes="section")
        with Horizontal(classes="row"):
            names = list(self.registry.datasets) if self.registry else []
            options = [(n, n) for n in names] + [("path…", CUSTOM)]
            # the user's pick while it has data, else the first that has: an extracted one before a missing demo
            present = [n for n in names if Path(self.registry.datasets[n].train).exists()]
            initial = self._picked_dataset if self._picked_dataset in present else (present or [options[0][1]])[0]
            yield LaunchSelect(options, value=initial, allow_blank=False, id="dataset", compact=True)
            yield Input(placeholder="train data: chunk directory or .pt", id="data-path", compact=True)
            yield Input(placeholder="val data (optional)", id="val-path", compact=True)
        yield Static(id="data-info")
        first = self.registry.levels[next(iter(levels))] if levels else None
        with Collapsible(title="advanced: architecture overrides (empty = level default)", id="advanced"):
            with Horizontal(classes="row"):
                for name in ARCH_FIELDS:  # placeholders now: these are mounted last, maybe after on_mount
                    yield from self._field(name, placeholder=self._arch_default(first, name), valid_empty=True)
        with Collapsible(title="sweep: several values a field (a grid), or LOW:HIGH ranges with random points",
                         id="sweep"):
            with Horizontal(classes="row"):
                for name in SWEEP_FIELDS:
                    with Vertical(classes="field"):
                        yield Label(FIELD[name].label)
                        yield Input(placeholder="e.g. 1e-4,1e-3" if FIELD[name].kind is float else "e.g. 32,64",
                                    id=f"s-{name}", validators=[SweepCheck(name)], valid_empty=True, compact=True)
                with Vertical(classes="field"):
                    yield Label("random points")
                    yield Input(placeholder="grid", id="sweep-random", validators=[Integer(minimum=1)],
                                valid_empty=True, compact=True)
        yield Checkbox("start from the forked run's best weights (--init_from)", id="init-from", compact=True)

    def _field(self, name: str, placeholder: str = "", valid_empty: bool = False):
        with Vertical(classes="field"):
            yield Label(FIELD[name].label)
            yield Input(placeholder=placeholder, id=f"f-{name}", validators=[FieldCheck(FIELD[name])],
                        valid_empty=valid_empty, compact=True)

    def on_mount(self) -> None:
        try:
            if self.registry and self.registry.levels:
                first = next(iter(self.registry.levels))
                self.query_one("#levels", SelectionList).select(first)
                self._fill_defaults(first)
                self._show_level_info(first)
            self._dataset_selected(self.query_one("#dataset", Select).value)
        except NoMatches:
            # The app quit while this panel was being mounted (it is mounted late, after the
            # first rows): teardown removes the children, deepest first, under this handler.
            if self.is_attached and self.app.is_running:
                raise

    # -- levels ------------------------------------------------------------------------------
    def _level_prompt(self, key: str) -> Text:
        spec = self.registry.levels[key]
        count = self.params.get(key)
        params = fmt_int(count) if count is not None else "…"
        return Text.assemble((f"{key:<5}", "bold"), f" {spec.name:<12} ", (f"{params:>7}", "cyan"),
                             (f"  {spec.description}", "dim"))

    def set_params(self, widths: tuple[int, int], rows: list[dict]) -> None:
        """Parameter counts from `adapter-engine levels --json` at `widths` (Hd, Hv)."""
        self.widths = widths
        self.params = {r["key"]: r["params"] for r in rows if isinstance(r, dict) and "key" in r}
        levels = self.query_one("#levels", SelectionList)
        for key in self.registry.levels if self.registry else []:
            levels.replace_option_prompt(key, self._level_prompt(key))
        selected = self.selected_levels()
        if selected:
            self._show_level_info(selected[0])

    def selected_levels(self) -> list[str]:
        levels = self.query_one("#levels", SelectionList).selected
        order = list(self.registry.levels) if self.registry else []
        return sorted(levels, key=order.index)

    def _show_level_info(self, key: str) -> None:
        spec = self.registry.levels[key]
        count = self.params.get(key)
        t = spec.train
        self.query_one("#level-info", Static).update(
            f"[b]{key}[/b] {spec.name} · {fmt_int(count) if count is not None else '…'} params at H={widths_text(*self.widths)}"
            f" · reads {spec.consumes} · defaults: {plural(t['num_epochs'], 'epoch')}, batch {t['batch_size']}, "
            f"lr {t['learning_rate']:g}, early stop {t['early_stopping']}\n{spec.description}")

    @on(SelectionList.SelectionHighlighted, "#levels")
    def _level_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        event.stop()
        if not self._settled():
            return
        self._show_level_info(event.selection.value)

    @on(SelectionList.SelectedChanged, "#levels")
    def _levels_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        if not self._settled():
            return
        selected = self.selected_levels()
        if selected:
            self._fill_defaults(selected[0])

    def _fill_defaults(self, key: str) -> None:
        """Prefill the training fields from `key`'s defaults, keeping what the user typed."""
        spec = self.registry.levels[key]
        for name in TRAIN_FIELDS:
            box = self.query_one(f"#f-{name}", Input)
            value = f"{spec.train[name]:g}" if isinstance(spec.train[name], float) else str(spec.train[name])
            if box.value == self._prefill.get(name, ""):
                box.value = value
            self._prefill[name] = value
        for name in ARCH_FIELDS:
            for box in self.query(f"#f-{name}").results(Input):  # not yet there on mount: see compose
                box.placeholder = self._arch_default(spec, name)

    @staticmethod
    def _arch_default(spec: LevelSpec | None, name: str) -> str:
        return str(spec.arch.get(name, "—")) if spec is not None else ""

    # -- dataset -----------------------------------------------------------------------------
    @on(Select.Changed, "#dataset")
    def _dataset_changed(self, event: Select.Changed) -> None:
        event.stop()
        if not self._settled():
            return
        self._dataset_selected(event.value)

    def _dataset_selected(self, value: Any) -> None:
        train, val = self.query_one("#data-path", Input), self.query_one("#val-path", Input)
        if self.registry and value in self.registry.datasets:
            entry = self.registry.datasets[value]
            train.value, val.value = str(entry.train), str(entry.val or "")
        self._schedule_inspect()

    @on(Input.Changed, "#data-path")
    def _path_typed(self, event: Input.Changed) -> None:
        event.stop()
        if not self._settled():
            return
        named = self._named_dataset()
        if named and str(self.registry.datasets[named].train) != event.value:
            self.query_one("#dataset", Select).value = CUSTOM
        self._schedule_inspect()

    def _named_dataset(self) -> str | None:
        value = self.query_one("#dataset", Select).value
        return value if self.registry and value in self.registry.datasets else None

    def _schedule_inspect(self) -> None:
        if self._inspect_timer is not None:
            self._inspect_timer.stop()
        self._inspect_timer = self.set_timer(0.4, self._request_inspect)

    def revalidate(self) -> None:
        """Inspect the dataset in the form again (it may have appeared since)."""
        self._schedule_inspect()

    def _request_inspect(self) -> None:
        self._inspect_timer = None
        if not self._settled():
            return  # a rebuilt form schedules its own inspection
        path = self.query_one("#data-path", Input).value.strip()
        if not path:
            self.show_dataset(None, "type a dataset path or pick a named dataset")
            return
        self.query_one("#data-info", Static).update(f"inspecting {path} …")
        self.post_message(self.DatasetChanged(path))

    def show_dataset(self, info: dict | None, error: str | None = None) -> None:
        """The inspect result (or its one-line error) for the current path."""
        if not self._settled():
            return
        box = self.query_one("#data-info", Static)
        if error or not info:
            self.dataset_ok = False
            box.update(Text(f"✗ {error}", style="bold red"))
            return
        self.dataset_ok = True
        hidden = info.get("hidden_dim")
        drafter = info.get("drafter_dim", hidden)
        samples, chunks = info.get("samples"), info.get("chunks")
        box.update(Text(f"✓ {info.get('format', '?')} · {fmt_int(samples)} sample{'' if samples == 1 else 's'} · "
                        f"{chunks if chunks is not None else '?'} chunk{'' if chunks == 1 else 's'} · "
                        f"hidden {widths_text(drafter, hidden)}",
                        style="green"))
        widths = (drafter, hidden)
        if all(isinstance(w, int) and w > 0 for w in widths) and (widths != self.widths or not self.params):
            self.post_message(self.ParamsWanted(widths))

    def set_first_run(self, first_run: bool) -> None:
        self.set_class(first_run, "-first-run")
        if first_run:
            self.query_one("#demo", Button).focus()

    def synth_progress(self, line: str) -> None:
        self.query_one("#synth-progress", Static).update(line)

    # -- fork --------------------------------------------------------------------------------
    def fill_from_config(self, config: dict, run_dir: str | None = None) -> str | None:
        """Copy a run's level, dataset and hyperparameters into the form, and offer its best
        weights as the starting point. Returns a problem."""
        if not self.registry:
            return "no registry loaded"
        adapter = config.get("adapter") if isinstance(config.get("adapter"), dict) else {}
        level = config.get("level_key") or seed.key_from_config(config)
        if level not in self.registry.levels:
            return f"level {level!r} of this run is not in adapters.toml"
        levels = self.query_one("#levels", SelectionList)
        levels.deselect_all()
        levels.select(level)
        spec = self.registry.levels[level]
        settings = config.get("settings") if isinstance(config.get("settings"), dict) else None
        if settings is not None:  # ours: every setting of the form, as the run used it
            values = {name: settings.get(name) for name in TRAIN_FIELDS + RUN_FIELDS}
        else:  # the reference's config.json: its training table
            training = config.get("training") if isinstance(config.get("training"), dict) else {}
            values = {"num_epochs": training.get("epochs"), "batch_size": training.get("batch_size"),
                      "learning_rate": training.get("learning_rate"), "early_stopping": training.get("early_stopping"),
                      "seed": config.get("seed"), "device": config.get("device")}
        for name, value in values.items():
            if value is not None and not isinstance(value, bool):
                self.query_one(f"#f-{name}", Input).value = f"{value:g}" if isinstance(value, float) else str(value)
        for name in ARCH_FIELDS:
            value = adapter.get(name)
            default = spec.arch.get(name)
            self.query_one(f"#f-{name}", Input).value = str(value) if value is not None and value != default else ""
        # Keep the forked values even when the level selection change prefills defaults.
        self._prefill = {name: "\0" for name in TRAIN_FIELDS}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        if data.get("train_path"):
            self.query_one("#dataset", Select).value = CUSTOM
            self.query_one("#data-path", Input).value = str(data["train_path"])
            self.query_one("#val-path", Input).value = str(data.get("val_path") or "")
        self.forked_from = run_dir
        self.set_class(run_dir is not None, "-forked")
        self.query_one("#init-from", Checkbox).value = False
        return None

    # -- submit ------------------------------------------------------------------------------
    def collect(self, levels: list[str], front: bool) -> tuple[LaunchRequest | None, list[str]]:
        """Validate the form into a request (or the list of problems). A training field still at
        its prefill is left out, so each level queued takes its own default."""
        errors: list[str] = []
        if not levels:
            errors.append("select at least one level")
        fields: dict[str, Any] = {}
        for name in TRAIN_FIELDS + RUN_FIELDS + ARCH_FIELDS:
            box = self.query_one(f"#f-{name}", Input)
            value = box.value.strip()
            if not value:
                if name in TRAIN_FIELDS:
                    errors.append(f"{FIELD[name].label} is empty")
                continue
            result = box.validate(value)
            if result is not None and not result.is_valid:
                errors.append(f"{FIELD[name].label}: {'; '.join(result.failure_descriptions)}")
                continue
            if value != self._prefill.get(name):
                fields[name] = FIELD[name].parse(value)
        for box in [*(self.query_one(f"#s-{n}", Input) for n in SWEEP_FIELDS), self.query_one("#sweep-random", Input)]:
            result = box.validate(box.value) if box.value.strip() else None
            if result is not None and not result.is_valid:
                errors.append(f"sweep {box.id[2:]}: {'; '.join(result.failure_descriptions)}")
        train = self.query_one("#data-path", Input).value.strip()
        val = self.query_one("#val-path", Input).value.strip()
        if not train:
            errors.append("no dataset: pick one or type a path")
        elif self.dataset_ok is False:
            errors.append("the dataset does not validate (see above)")
        if errors:
            return None, errors
        dataset = self._named_dataset()
        if dataset is None:
            fields["train_data"] = train
            if val:
                fields["val_data"] = val
        if self.forked_from and self.query_one("#init-from", Checkbox).value:
            fields["init_from"] = self.forked_from
        sweep, random_n = self._sweep(fields)
        return LaunchRequest(levels, fields, front, dataset, sweep, random_n), []

    def _sweep(self, fields: dict[str, Any]) -> tuple[list[str], int | None]:
        """The sweep's axes (a swept field's single value is dropped) and its random points."""
        axes = []
        for name in SWEEP_FIELDS:
            value = self.query_one(f"#s-{name}", Input).value.strip()
            if value:
                axes.append(f"{name}={value}")
                fields.pop(name, None)
        text = self.query_one("#sweep-random", Input).value.strip()
        return axes, int(text) if text else None

    async def set_registry(self, registry: Registry | None) -> None:
        """adapters.toml changed: rebuild the form from it, keeping the levels picked and the
        values typed (a level that is gone is dropped)."""
        typed = {box.id: box.value for box in self.query(Input) if box.value}
        named = self._named_dataset()
        if named is not None:  # the paths came from a named dataset: it decides them again
            typed.pop("data-path", None)
            typed.pop("val-path", None)
        selected = self.selected_levels()
        self.registry, self._prefill, self.params = registry, {}, {}
        self._picked_dataset = named
        if self._inspect_timer is not None:
            self._inspect_timer.stop()
            self._inspect_timer = None
        self._recomposing = True
        try:
            await self.recompose()
        finally:
            self._recomposing = False
        self.on_mount()
        keep = [k for k in selected if registry and k in registry.levels]
        if keep:
            levels = self.query_one("#levels", SelectionList)
            levels.deselect_all()
            for key in keep:
                levels.select(key)
        for box in self.query(Input):
            if box.id in typed and box.id not in {f"f-{n}" for n in TRAIN_FIELDS}:
                box.value = typed[box.id]
        self.post_message(self.ParamsWanted(self.widths))

    @on(Button.Pressed, "#demo")
    def _demo(self, event: Button.Pressed) -> None:
        event.stop()
        event.button.disabled = True
        self.post_message(self.DemoRequested())
