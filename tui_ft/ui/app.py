"""The Textual app: five places to work (modes), a header with the workspace and GPUs, a footer, commands.

Start-up imports Textual and the light domain modules only. torch, transformers and the rest of the
training stack are imported on worker threads by the screens that need them (the token view's
tokenizer), never here.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from tui_ft.ui.css_cache import KeptStylesheet
from tui_ft.ui.screens.datasets import DatasetsScreen
from tui_ft.ui.widgets.fields import in_field, leave_field, typing_in
from tui_ft.ui.widgets.shell import PLACES, ShellHeader, StyledOnMount, gpu_summary
from tui_ft.workspace import Workspace

if TYPE_CHECKING:
    from textual.command import Provider

    from tui_ft.inference.client import GenerationClient
    from tui_ft.monitor.system import GpuSampler, GpuStatus

GPU_POLL_S = 5.0

# Textual tells only the node that runs a worker how it ended. Bubbling that message up the DOM lets
# one handler on the app (`TuiFtApp.on_worker_state_changed`) report every worker that failed,
# wherever it runs; nodes that follow a worker of their own compare `event.worker` with it.
Worker.StateChanged.bubble = True

THEME = Theme(
    name="tui-ft",
    primary="#5fafd7",
    secondary="#87af87",
    accent="#ffaf5f",
    warning="#ffaf00",
    error="#ff5f5f",
    success="#87d787",
    foreground="#d0d0d0",
    background="#1c1c1c",
    surface="#202020",
    panel="#2a2a2a",
    dark=True,
)


def with_shell(screen_class: type[Screen]) -> type[Screen]:
    """`screen_class` with the app's header on top (in place of any header of its own), styled once
    when it is first shown (`StyledOnMount`)."""

    class ShellScreen(StyledOnMount, screen_class):  # type: ignore[valid-type, misc]
        def compose(self) -> ComposeResult:
            from textual.widgets import Header  # (not needed for the first screen: imported here)

            yield ShellHeader()
            for widget in super().compose():
                if not isinstance(widget, (ShellHeader, Header)):
                    yield widget

    ShellScreen.__name__ = ShellScreen.__qualname__ = f"{screen_class.__name__}WithShell"
    return ShellScreen


def configure_screen() -> Screen:
    """The Configure mode's screen, imported on first use: the recipe schema (pydantic) is not
    needed to paint the first screen, and importing it would cost a fifth of the start-up budget."""
    from tui_ft.ui.screens.configure import ConfigureScreen

    return with_shell(ConfigureScreen)()


def runs_screen() -> Screen:
    """The Runs mode's screen, imported on first use: its charts (plotext) cost a third of the
    start-up budget to import and are not needed to paint the first screen."""
    from tui_ft.ui.screens.runs import RunsScreen

    return with_shell(RunsScreen)()


def annotate_screen() -> Screen:
    """The Annotate mode's screen, imported on first use."""
    from tui_ft.ui.screens.annotate import AnnotateScreen

    return with_shell(AnnotateScreen)()


def chat_screen() -> Screen:
    """The Chat mode's screen, imported on first use."""
    from tui_ft.ui.screens.chat import ChatScreen

    return with_shell(ChatScreen)()


def tui_ft_commands() -> type[Provider]:
    """The command palette's tui-ft commands, imported when the palette first opens."""
    from tui_ft.ui.commands import TuiFtCommands

    return TuiFtCommands


def job_name(worker: Worker) -> str:
    """What a worker does, for people: its description (`@work(description=...)`), else its group
    and method (Textual's own description of an undescribed worker is the call with its arguments)."""
    if worker.description and not worker.description.startswith(f"{worker.name}("):
        return worker.description
    return f"{worker.group} ({worker.name})"


class TuiFtApp(App[int]):
    """tui-ft: Datasets, Configure, Runs, Annotate and Chat over one workspace."""

    TITLE = "tui-ft"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    MODES = {
        "datasets": DatasetsScreen,
        "configure": configure_screen,
        "runs": runs_screen,
        "annotate": annotate_screen,
        "chat": chat_screen,
    }
    DEFAULT_MODE = "datasets"
    COMMANDS = App.COMMANDS | {tui_ft_commands}
    BINDINGS = [
        # ctrl+q quits from anywhere; while a field has the keyboard (where q is a letter) the footer
        # says so. The first is taken only then; otherwise the second, unshown, quits as Textual's does.
        Binding("ctrl+q", "quit_from_field", "Quit", priority=True, id="app.quit_from_field"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.quit_anywhere"),
        *(
            Binding(key, f"switch_mode('{mode}')", title, show=False, id=f"app.mode.{mode}")
            for mode, title, key in PLACES
        ),
        Binding("q", "quit", "Quit", id="app.quit"),
        # a place without an Escape of its own: Escape leaves the field (see widgets/fields.py)
        Binding("escape", "leave_field", "Leave field", id="app.leave_field"),
    ]

    gpu_summary: reactive[str] = reactive("GPU: checking…")
    # The theme from the start, not set after: setting it makes Textual parse and apply the whole CSS
    # again, twice, while the first screen is built (registered in __init__, before any CSS is parsed).
    theme: Reactive[str] = Reactive(THEME.name)

    class GpuSampled(Message):
        def __init__(self, status: GpuStatus) -> None:
            super().__init__()
            self.status = status

    def __init__(
        self,
        workspace: Workspace,
        start_mode: str = "datasets",
        open_path: str | None = None,
        start_run: str | None = None,
        chat_models: list[str] | None = None,
        annotate_session: str | None = None,
    ):
        if start_mode not in self.MODES:
            raise ValueError(f"unknown mode {start_mode!r}; expected one of {', '.join(self.MODES)}")
        # Read by App.__init__: the first screen is the one asked for (a per-instance class setting).
        self.DEFAULT_MODE = start_mode  # type: ignore[misc]
        super().__init__()
        # nothing has been parsed into it yet: the same, with the parsed CSS kept between starts
        self.stylesheet = KeptStylesheet(variables=self.get_css_variables(), folder=workspace.cache / "ui")
        self.workspace = workspace
        self.open_path = open_path
        self.start_run = start_run  # the run the Runs screen opens on (`tui-ft watch RUN`)
        self.chat_models = chat_models  # the models the Chat screen loads first (`tui-ft chat`)
        self.annotate_session = annotate_session  # the session the Annotate screen opens (`tui-ft annotate`)
        self._generation: GenerationClient | None = None
        self.gpu_status: GpuStatus | None = None
        self._gpu: GpuSampler | None = None  # made by the first poll, after the first frame
        self._gpu_worker: Worker | None = None  # the GPU sample in flight
        self._failing: dict[tuple[str, str], str] = {}  # job -> its failure last reported
        self._css_current = False  # the stylesheet has been applied once (see refresh_css)
        self._gc_paused = False  # the collector is off while the first screen is built (see on_load)
        self._after_first_frame: list[Callable[[], object]] | None = []  # None once it is drawn
        self.set_class(True, f"-theme-{THEME.name}", update=False)  # what setting the theme would add

    def get_css_variables(self) -> dict[str, str]:
        # App.__init__ builds the stylesheet from these before a subclass can register a theme: without
        # tui-ft's theme here, the CSS would be parsed with Textual's default colours, then all again.
        if THEME.name not in self.available_themes:
            self.register_theme(THEME)
        return super().get_css_variables()

    def refresh_css(self, animate: bool = True) -> None:
        """Textual refreshes the CSS when the first screen is installed, before anything is mounted: it
        parses all the CSS again with the theme's variables and drops the parse cache, so every widget
        class mounted after parses it all a third time. The stylesheet has this theme's variables from
        the start (`get_css_variables`), so then only the styles are applied again (what the refresh
        does besides parsing); any other refresh (a theme changed, another place opened) is Textual's."""
        built_with = self.theme_variables
        if not self._css_current and self.get_css_variables() == built_with:
            self.stylesheet.update(self, animate=animate)
            return
        super().refresh_css(animate)

    def on_load(self) -> None:
        """No cyclic garbage collection until the first frame is drawn: building the first screen makes
        hundreds of thousands of objects and few cycles, and the collections they trigger (one of them
        a full one, walking Textual and everything imported) were a fifth of the start-up's CPU time.
        Collection resumes once the first frame is on the screen (`on_ready`), or when the app ends
        before it."""
        self._gc_paused = gc.isenabled()
        gc.disable()

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def on_mount(self) -> None:
        self._css_current = True

    def after_first_frame(self, callback: Callable[[], object]) -> None:
        """Call `callback` once the app's first frame is drawn (at once, after a refresh, if it is): for
        work the first screen does not show, such as the widgets of a tab not open yet."""
        if self._after_first_frame is None:
            self.call_after_refresh(callback)
        else:
            self._after_first_frame.append(callback)

    def on_ready(self) -> None:
        """The first frame is on the screen: only now sample the GPUs (loading NVML on a worker thread
        still holds the interpreter's lock for a while, which would delay that frame), and do what
        waited for it (`after_first_frame`)."""
        self._resume_gc()
        self._poll_gpu()
        waiting, self._after_first_frame = self._after_first_frame or [], None
        for callback in waiting:
            self.call_after_refresh(callback)
        self.call_after_refresh(self.freeze_heap)
        self.call_after_refresh(self._keep_css)

    def _keep_css(self) -> None:
        if isinstance(self.stylesheet, KeptStylesheet):  # (Textual replaces it when CSS files are watched)
            self.stylesheet.save()

    def freeze_heap(self) -> None:
        """Move everything alive now out of the collector's sight. What the app holds from its start
        (Textual, the screens, Rich, and whatever a library imported) is long-lived; a full collection
        that walks it all stalls the event loop for 100-300 ms while a reply streams (the frames' garbage
        triggers one every few seconds), and a key typed then waits for it (`bench/chat_service.py`).
        Called once the first screen is drawn and again when a screen is first built."""
        gc.freeze()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quit_from_field":
            return typing_in(self.screen)
        if action == "leave_field":
            return in_field(self.screen)
        return True

    async def action_quit_from_field(self) -> None:
        await self.action_quit()

    def action_leave_field(self) -> None:
        leave_field(self.screen)

    # --- GPU summary (poll without overlap: the next sample is scheduled when the last one ended) ----

    def _poll_gpu(self) -> None:
        if self._gpu is None:
            from tui_ft.monitor.system import GpuSampler

            self._gpu = GpuSampler()
        self._gpu_worker = self._sample_gpu()

    @work(thread=True, exclusive=True, group="gpu", exit_on_error=False, description="sampling the GPUs")
    def _sample_gpu(self) -> None:
        if self._gpu is not None:  # (made by `_poll_gpu` before it starts this)
            self.post_message(self.GpuSampled(self._gpu.sample()))

    @on(GpuSampled)
    def _on_gpu_sampled(self, message: GpuSampled) -> None:
        self.gpu_status = message.status
        self.gpu_summary = gpu_summary(message.status)

    # --- workers that end -----------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's end, wherever it ran: a failure is told (once per job and failure, the
        traceback in the workspace's error log), and the GPU poll goes on whether its sample came or not."""
        worker = event.worker
        if worker is self._gpu_worker and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._gpu_worker = None
            self.set_timer(GPU_POLL_S, self._poll_gpu)
        job = job_name(worker)
        key = (job, worker.group)
        if event.state == WorkerState.SUCCESS:
            self._failing.pop(key, None)
        if event.state != WorkerState.ERROR or worker.error is None:
            return
        from tui_ft.errorlog import describe, log_exception

        sentence = describe(worker.error)
        if self._failing.get(key) == sentence:  # a poller failing the same way again: told already
            return
        self._failing[key] = sentence
        log = log_exception(self.workspace, worker.error, f"{job} failed")
        details = f"\ndetails: {log}" if log is not None else ""
        self.notify(
            f"{sentence}{details}",
            title=f"{job[:1].upper()}{job[1:]} failed",
            severity="error",
            markup=False,
            timeout=10,
        )

    def on_unmount(self) -> None:
        self._resume_gc()
        self._keep_css()  # with what the places opened since parsed
        if self._gpu is not None:
            self._gpu.close()
        if self._generation is not None:
            self._generation.close()

    @property
    def generation(self) -> GenerationClient:
        """The generation service (Chat, Annotate): one child process, started on the first request."""
        if self._generation is None:
            from tui_ft.inference.client import GenerationClient

            self._generation = GenerationClient(self.workspace)
        return self._generation

    # --- what other parts call ----------------------------------------------------------------------

    def open_run(self, run_id: str) -> None:
        """Show run `run_id` in the Runs mode."""
        self.switch_mode("runs")
        show = getattr(self.screen, "show_run", None)
        if show is not None:
            show(run_id)

    def runs_action(self, action: str) -> None:
        """Run one of the Runs screen's actions (stop, resume, chat, export, overlay, filter) on the run
        it shows, or on the run under the cursor of its list."""
        self.switch_mode("runs")
        screen = self.screen
        method = getattr(screen, f"action_{action}", None)
        if method is not None:
            screen.call_after_refresh(method)

    def open_chat(self, model_ref: str) -> None:
        """Chat with a model reference (a run id, or `RUN:checkpoint-N`) in the Chat mode."""
        self.switch_mode("chat")
        show = getattr(self.screen, "show_model", None)
        if show is not None:
            show(model_ref)

    def open_dataset(self, ref: str) -> None:
        """Open a dataset (a path or a hub id) on the Datasets screen."""
        self.switch_mode("datasets")
        screen = self.screen
        if isinstance(screen, DatasetsScreen):
            screen.call_after_refresh(screen.open, ref)

    def show_tab(self, tab: str) -> None:
        """Show one of the Datasets screen's tabs (rows, row, tokens, errors)."""
        self.switch_mode("datasets")
        screen = self.screen
        if isinstance(screen, DatasetsScreen):
            screen.call_after_refresh(screen.action_tab, tab)

    def action_open_dataset(self) -> None:
        self.switch_mode("datasets")
        screen = self.screen
        if isinstance(screen, DatasetsScreen):
            screen.call_after_refresh(screen.action_open)

    def action_find_rows(self) -> None:
        self.switch_mode("datasets")
        screen = self.screen
        if isinstance(screen, DatasetsScreen):
            screen.call_after_refresh(screen.action_search)


def run_app(
    workspace: Workspace,
    start_mode: str = "datasets",
    open_path: str | None = None,
    start_run: str | None = None,
    chat_models: list[str] | None = None,
    annotate_session: str | None = None,
) -> int:
    """Run the UI until it is closed; the exit status for the command line."""
    app = TuiFtApp(
        workspace.ensure(),
        start_mode=start_mode,
        open_path=open_path,
        start_run=start_run,
        chat_models=chat_models,
        annotate_session=annotate_session,
    )
    app.run()
    return app.return_code or 0
