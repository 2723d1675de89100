"""The Launch tab: the form, and below it the actions that are always in view (start now, add
to queue, queue a preset) with what is wrong with the form. It owns the thread workers that ask
the engine (inspecting a dataset, counting parameters, queueing through `queue add`, making the
demo dataset). The screen's ctrl+s / ctrl+o / ctrl+l call its actions whatever has the focus."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Select, SelectionList, Static
from textual.worker import get_current_worker

from adapters.registry import Registry
from tui.backend import Backend
from tui.messages import DatasetInspected, JobsSubmitted, LevelsCounted, PaneReady, SynthProgressed
from tui.widgets.launch import LaunchForm, LaunchRequest, LaunchSelect
from tui.refresh import guarded

DEMO_EPOCHS = 10


class LaunchPane(Vertical):
    DEFAULT_CSS = """
    LaunchPane { height: 1fr; }
    LaunchPane > #errors { height: auto; max-height: 4; color: $error; padding: 0 1; }
    LaunchPane > #actions { height: 1; dock: bottom; padding: 0 1; }
    LaunchPane > #actions Button { margin-right: 1; }
    LaunchPane > #actions Select { width: 16; margin-right: 1; }
    """
    BINDINGS = [Binding("escape", "leave_input", "Leave field", id="launch.leave", show=False,
                        tooltip="Leave the field (then 1/2/3 switch tabs)")]

    def __init__(self, registry: Registry | None, backend: Backend, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.registry = registry
        self.backend = backend

    def compose(self) -> ComposeResult:
        yield LaunchForm(self.registry, id="launch-form")
        yield Static(id="errors")
        with Horizontal(id="actions"):
            yield Button("Start now ^s", id="start", variant="success", compact=True)
            yield Button("Add to queue ^o", id="enqueue", variant="primary", compact=True)
            presets = list(self.registry.presets) if self.registry else []
            yield LaunchSelect([(p, p) for p in presets], prompt="preset", id="preset", allow_blank=not presets,
                               compact=True, **({"value": presets[0]} if presets else {}))
            yield Button("Queue preset ^l", id="queue-preset", compact=True)

    @property
    def form(self) -> LaunchForm:
        return self.query_one(LaunchForm)

    def on_mount(self) -> None:
        self.post_message(PaneReady(self))

    def focus_form(self) -> None:
        form = self.form
        if form.has_class("-first-run"):
            form.query_one("#demo").focus()
        else:
            form.query_one(SelectionList).focus()
        if not form.params:
            self.count_levels(form.widths)

    # -- actions -----------------------------------------------------------------------------
    def action_submit(self, front: bool) -> None:
        self._submit(self.form.selected_levels(), front)

    def action_preset(self) -> None:
        preset = self.query_one("#preset", Select).value
        if self.registry and preset in self.registry.presets:
            self._submit(self.registry.presets[preset], False)

    def action_leave_input(self) -> None:
        self.form.query_one(SelectionList).focus()

    def _submit(self, levels: list[str], front: bool) -> None:
        request, errors = self.form.collect(levels, front)
        self.query_one("#errors", Static).update("\n".join(f"✗ {e}" for e in errors))
        if request:
            self.submit(request)

    @on(Button.Pressed, "#actions Button")
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_submit(True)
        elif event.button.id == "enqueue":
            self.action_submit(False)
        elif event.button.id == "queue-preset":
            self.action_preset()

    @work(thread=True, group="launch-submit", exit_on_error=False)
    def submit(self, request: LaunchRequest) -> None:
        ids = self.backend.submit(request)
        self.post_message(JobsSubmitted(ids, request.levels, request.front))

    # -- what the screen asks ----------------------------------------------------------------
    def fork(self, config: dict, run_dir: str) -> str | None:
        return self.form.fill_from_config(config, run_dir)

    def datasets_changed(self) -> None:
        """Something under RUNS/datasets changed: check the dataset in the form again."""
        self.form.revalidate()

    async def set_registry(self, registry: Registry | None) -> None:
        self.registry = registry
        await self.form.set_registry(registry)
        presets = list(registry.presets) if registry else []
        select = self.query_one("#preset", Select)
        select.set_options([(p, p) for p in presets])
        if presets:
            select.value = presets[0]

    def set_first_run(self, first_run: bool) -> None:
        self.form.set_first_run(first_run)

    # -- the engine (thread workers) ---------------------------------------------------------
    @on(LaunchForm.DatasetChanged)
    def _dataset_changed(self, message: LaunchForm.DatasetChanged) -> None:
        self.inspect_dataset(message.path)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def inspect_dataset(self, path: str) -> None:
        try:
            info, error = self.backend.inspect(path), None
        except Exception as exc:
            info, error = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.post_message(DatasetInspected(path, info, error))

    @on(DatasetInspected)
    @guarded("the dataset check")
    def _inspected(self, message: DatasetInspected) -> None:
        self.form.show_dataset(message.info, message.error)
        if message.info and not message.error:
            self.set_first_run(False)  # there is data now: the offer and its banner go

    @on(LaunchForm.ParamsWanted)
    def _params_wanted(self, message: LaunchForm.ParamsWanted) -> None:
        self.count_levels(message.widths)

    @work(thread=True, exclusive=True, group="levels", exit_on_error=False)
    def count_levels(self, widths: tuple[int, int]) -> None:
        self.post_message(LevelsCounted(widths, self.backend.levels(widths)))

    @on(LevelsCounted)
    @guarded("the parameter counts")
    def _levels_counted(self, message: LevelsCounted) -> None:
        self.form.set_params(message.widths, message.rows)

    @on(LaunchForm.DemoRequested)
    def _demo(self, message: LaunchForm.DemoRequested) -> None:
        self.make_demo()

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def make_demo(self) -> None:
        registry = self.registry
        if not registry or "demo" not in registry.datasets:
            raise RuntimeError("adapters.toml has no [datasets.demo]")
        entry = registry.datasets["demo"]
        if not Path(entry.train).exists():
            self.backend.synth(Path(entry.train).parent, lambda line: self.post_message(SynthProgressed(line)))
        self.post_message(SynthProgressed("demo dataset ready; queueing L1", done=True))
        level = "L1" if "L1" in registry.levels else next(iter(registry.levels))
        request = LaunchRequest([level], {"num_epochs": DEMO_EPOCHS}, front=True, dataset="demo")
        self.post_message(JobsSubmitted(self.backend.submit(request), [level], True))

    @on(SynthProgressed)
    @guarded("the demo progress")
    def _synth_progress(self, message: SynthProgressed) -> None:
        self.form.synth_progress(message.line)
        if message.done:
            self.form.revalidate()
