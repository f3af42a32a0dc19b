"""Modal dialogs: confirm an operation, pick one of a few choices, create a run, and
the key bindings (``?``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.validation import Function, Length, ValidationResult
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from apsis_tui.observe import observe

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no to one sentence; ``y``/Enter confirm, ``n``/Esc cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(self.question, classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="primary", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PickDialog(ModalScreen[str | None]):
    """One choice out of a short list (a state to mark, a signal, a filter term)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, choices: Sequence[tuple[str, str]]) -> None:
        """``choices``: (value, label) pairs."""
        super().__init__(classes="dialog")
        self.title_text = title
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*[Option(label, id=value) for value, label in self.choices])

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key binding of the screen below, the widgets on it, and the app."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, below: Screen[Any]) -> None:
        super().__init__(classes="dialog")
        self.below = below

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box help-box"):
            yield Label("Keys (Esc closes)", classes="dialog-title")
            with VerticalScroll():
                yield Static(self._table())

    def _sections(self) -> list[tuple[str, list[Binding]]]:
        sections: list[tuple[str, list[Binding]]] = []
        seen: set[type] = set()
        nodes: list[Any] = [self.below, *self.below.walk_children(with_self=False), self.app]
        for node in nodes:
            kind = type(node)
            if kind in seen or not getattr(kind, "BINDINGS", None):
                continue
            if not kind.__module__.startswith("apsis_tui"):
                continue  # Textual's own widgets: their keys are the usual ones
            seen.add(kind)
            bindings = [b for b in _bindings(kind.BINDINGS) if b.description]
            if bindings:
                name = getattr(node, "HELP_NAME", None) or kind.__name__
                sections.append((name, bindings))
        return sections

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, bindings in self._sections():
            table.add_row(Text(name, style="underline"), "")
            for binding in bindings:
                keys = binding.key_display or ", ".join(
                    self.app.get_key_display(Binding(k.strip(), "")) for k in binding.key.split(",")
                )
                table.add_row(keys, binding.description)
        return table

    def action_close(self) -> None:
        self.dismiss(None)


def _bindings(specs: Iterable[BindingType]) -> list[Binding]:
    out = []
    for spec in specs:
        if isinstance(spec, Binding):
            out.append(spec)
        elif isinstance(spec, tuple) and len(spec) >= 2:
            out.append(Binding(spec[0], spec[1], spec[2] if len(spec) > 2 else ""))
    return out


_DURATION = re.compile(r"^\+\d+(\.\d+)?\s*(s|m|h|d|min|sec|hour|day)?[a-z]*$", re.IGNORECASE)


def valid_time(text: str) -> bool:
    """``now``, ``+DURATION`` (``+10m``) or an ISO 8601 time, as the API accepts."""
    text = text.strip()
    if not text or text.lower() == "now" or _DURATION.match(text):
        return True
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


class JobSelect(Select[str]):
    """A Select whose list opens as soon as one types a job's name, with what was typed
    already searched for (Select alone searches only once its list is open)."""

    def on_key(self, event: events.Key) -> None:
        if self.expanded or not (event.character and event.is_printable):
            return
        event.stop()
        event.prevent_default()
        self.action_show_overlay()
        overlay = self.query_one("SelectOverlay")  # the list, by its CSS type name
        overlay.post_message(events.Key(event.key, event.character))


class NewRunDialog(ModalScreen[None]):
    """Pick a job, fill its params, run now or at a time; Enter or ctrl+s creates."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
    ]

    def __init__(self, job_id: str | None = None) -> None:
        super().__init__(classes="dialog")
        self.job_id = job_id

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box new-run-box"):
            yield Label("New run", classes="dialog-title")
            yield Label("job")
            yield JobSelect(self._job_options(), prompt="pick a job (type to search)", id="job",
                         value=self.job_id if self.job_id in self.apsis.model.jobs else Select.NULL,
                         compact=True)
            yield VerticalScroll(id="params")
            yield Label("when: now, +10m, 2026-01-02T09:30 (local time)")
            yield Input("now", placeholder="now",
                        validators=[Function(valid_time, "not a time: use now, +10m or ISO")],
                        id="when", compact=True)
            yield Static("", id="new-run-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create (ctrl+s)", variant="primary", id="create", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)

    def _job_options(self) -> list[tuple[str, str]]:
        return [(job_id, job_id) for job_id in sorted(self.apsis.model.jobs)]

    def on_mount(self) -> None:
        observe(self, self.apsis.model.jobs_changed, lambda _: self._jobs_changed())
        if self.job_id in self.apsis.model.jobs:
            self._show_params(self.job_id)
            self.call_after_refresh(self._focus_first_empty)
        else:
            self.query_one("#job", Select).focus()

    def _jobs_changed(self) -> None:
        select = self.query_one("#job", Select)
        value = select.value
        select.set_options(self._job_options())
        if isinstance(value, str) and value in self.apsis.model.jobs:
            select.value = value

    @on(Select.Changed, "#job")
    def _job_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self._show_params(event.value)
            self.call_after_refresh(self._focus_first_empty)

    def _focus_first_empty(self) -> None:
        for field in [*self.query("#params Input").results(Input), self.query_one("#when", Input)]:
            if not field.value:
                field.focus()
                return
        self.query_one("#when", Input).focus()

    def _show_params(self, job_id: str) -> None:
        job = self.apsis.model.jobs.get(job_id) or {}
        params = self.query_one("#params", VerticalScroll)
        params.remove_children()
        widgets: list[Any] = []
        for name in job.get("params") or []:
            widgets.append(Label(name))
            widgets.append(Input(placeholder=f"{name} (required)", name=name, compact=True,
                                 validators=[Length(1, failure_description=f"{name} is required")],
                                 classes="param"))
        params.mount_all(widgets)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = [*self.query("#params Input"), self.query_one("#when", Input)]
        index = inputs.index(event.input) if event.input in inputs else -1
        empty_after = [i for i in inputs[index + 1:] if not i.value]
        if empty_after:
            empty_after[0].focus()
        else:
            self.action_create()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.dismiss(None)

    def _error(self, message: str) -> None:
        self.query_one("#new-run-error", Static).update(Text(message, style="bold"))

    def action_create(self) -> None:
        job_id = self.query_one("#job", Select).value
        if not isinstance(job_id, str):
            self._error("pick a job")
            return
        args: dict[str, str] = {}
        for field in self.query("#params Input").results(Input):
            result: ValidationResult | None = field.validate(field.value)
            if result is not None and not result.is_valid:
                self._error("; ".join(result.failure_descriptions))
                field.focus()
                return
            args[str(field.name)] = field.value
        when = self.query_one("#when", Input)
        if not valid_time(when.value):
            self._error(f"not a time: {when.value!r} (now, +10m, 2026-01-02T09:30)")
            when.focus()
            return
        text = when.value.strip()
        schedule = None if text.lower() in ("", "now") else text
        if schedule is not None and not schedule.startswith("+"):
            parsed = datetime.fromisoformat(schedule)
            if parsed.tzinfo is None:  # a time typed without a zone is local time
                schedule = parsed.astimezone().isoformat()
        self.create(job_id, args, schedule)

    @work(exclusive=True, group="new-run")
    async def create(self, job_id: str, args: dict[str, str], schedule: str | None) -> None:
        from apsis.client import ApsisError

        try:
            runs = await self.apsis.client.create_runs(job_id, args, schedule=schedule)
        except ApsisError as exc:
            self._error(exc.message)
            return
        for run in runs:
            self.apsis.model.apply_run(run)
        ids = ", ".join(run["run_id"] for run in runs)
        self.apsis.notify(f"created {ids} of {job_id}", title="New run")
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
