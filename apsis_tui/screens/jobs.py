"""The Jobs screen: the jobs tree by path, with the highlighted job's labels, next
scheduled times and recent runs (a sparkline of their durations)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static, Tree

from apsis.present import (
    FINISHED_STATES,
    finished_at,
    format_elapsed,
    job_labels,
    parse_time,
    started_at,
    state_symbol,
)
from apsis_tui.filter import format_term
from apsis_tui.observe import observe
from apsis_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

RECENT = 30  # runs in the sparkline
NEXT = 4  # next scheduled times shown


def durations(runs: list[Mapping[str, Any]]) -> list[float]:
    """Run durations in seconds, oldest first (for the sparkline)."""
    out = []
    for run in reversed(runs):
        times = run.get("times") or {}
        start, end = started_at(times), finished_at(times)
        if start is not None and end is not None and run.get("state") in FINISHED_STATES:
            out.append(max(0.0, end - start))
    return out


def job_summary(job: Mapping[str, Any], next_times: list[str], runs: list[Mapping[str, Any]],
                now: float) -> Text:
    """The text beside the tree: description, params, labels, next runs, recent states."""
    text = Text()
    text.append(f"{job.get('job_id', '')}\n", style="bold")
    meta = job.get("metadata") or {}
    if meta.get("description"):
        text.append(f"{str(meta['description']).strip()}\n", style="italic")
    if job.get("params"):
        text.append(f"params  {', '.join(job['params'])}\n")
    labels = job_labels(job)
    if labels:
        text.append(f"labels  {', '.join(labels)}\n")
    text.append("next    ")
    if next_times:
        shown = []
        for value in next_times[:NEXT]:
            epoch = parse_time(value)
            shown.append(f"{datetime.fromtimestamp(epoch):%m-%d %H:%M}" if epoch else value)
        text.append(", ".join(shown) + "\n")
    else:
        text.append("not scheduled\n", style="dim")
    if runs:
        counts = Counter(str(run.get("state")) for run in runs)
        text.append(f"last {len(runs)} runs  ")
        text.append("  ".join(f"{state_symbol(s)} {n} {s}"
                              for s, n in counts.most_common()) + "\n")
        spans = durations(runs)
        if spans:
            text.append(f"duration of the last {len(spans)}: min {format_elapsed(min(spans))}  "
                        f"max {format_elapsed(max(spans))}  "
                        f"last {format_elapsed(spans[-1])}\n")
    else:
        text.append("no runs yet\n", style="dim")
    return text


class JobsScreen(Screen[None]):
    """Browse jobs by folder; Enter opens a job, ``f`` shows its runs."""

    HELP_NAME = "Jobs screen"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "show_runs", "Its runs"),
        Binding("escape", "app.switch_mode('runs')", "Runs", show=False),
    ]

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar("Jobs")
        with Horizontal(id="jobs-body"):
            tree: Tree[str] = Tree("jobs", id="jobs-tree")
            tree.show_root = False
            yield tree
            with Vertical(id="job-detail"):
                yield Static(Text("Move to a job to see its schedule and last runs; "
                                  "Enter opens it.", style="dim"), id="job-summary")
                sparkline = Sparkline([], id="job-sparkline")
                sparkline.display = False  # until a job with finished runs is highlighted
                yield sparkline
        yield Footer()

    def on_mount(self) -> None:
        observe(self, self.apsis.model.jobs_changed, lambda _: self._fill())
        self._fill()
        self.query_one("#jobs-tree", Tree).focus()

    def _fill(self) -> None:
        """Rebuild the tree, keeping the highlighted job."""
        tree: Tree[str] = self.query_one("#jobs-tree", Tree)
        node = tree.cursor_node
        keep = node.data if node is not None else None
        tree.clear()
        folders: dict[str, Any] = {"": tree.root}
        target_line = 0
        jobs = self.apsis.model.jobs
        for job_id in sorted(jobs):
            parts = job_id.split("/")
            for depth in range(1, len(parts)):
                path = "/".join(parts[:depth])
                if path not in folders:
                    parent = folders["/".join(parts[:depth - 1])]
                    folders[path] = parent.add(parts[depth - 1] + "/", data=None, expand=True)
            job = jobs[job_id]
            label = Text(parts[-1])
            labels = job_labels(job)
            if labels:
                label.append("  " + " ".join(f"#{x}" for x in labels), style="dim")
            leaf = folders["/".join(parts[:-1])].add_leaf(label, data=job_id)
            if job_id == keep:
                target_line = leaf.line
        if keep is not None:
            self.call_after_refresh(lambda: setattr(tree, "cursor_line", max(0, target_line)))

    @on(Tree.NodeHighlighted, "#jobs-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        if event.node.data:
            self.load_detail(event.node.data)

    @on(Tree.NodeSelected, "#jobs-tree")
    def _selected(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            self.apsis.open_job(event.node.data)

    @work(exclusive=True, group="job-detail")
    async def load_detail(self, job_id: str) -> None:
        from apsis.client import ApsisError

        client = self.apsis.client
        job = self.apsis.model.jobs.get(job_id, {"job_id": job_id})
        try:
            schedule = await client.job_schedule(job_id, limit=NEXT)
            page = await client.runs(job_id=job_id, limit=RECENT)
        except ApsisError as exc:
            self.query_one("#job-summary", Static).update(Text(f"{job_id}: {exc.message}"))
            return
        next_times = [str(entry.get("time")) for entry in schedule]
        runs = page["runs"]
        self.query_one("#job-summary", Static).update(
            job_summary(job, next_times, runs, self.apsis.clock()))
        spans = durations(runs)
        sparkline = self.query_one("#job-sparkline", Sparkline)
        sparkline.display = len(spans) > 1
        sparkline.data = spans

    def action_show_runs(self) -> None:
        node = self.query_one("#jobs-tree", Tree).cursor_node
        if node is not None and node.data:
            self.apsis.filter_runs(format_term("job", node.data))
