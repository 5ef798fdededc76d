"""Browse: search the hub for Llama and Mistral checkpoints; each result shows whether it is downloaded and how
it fits the target, the highlighted one its details and full fit table."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Markdown, Static
from textual.worker import get_current_worker

from hubtui.app.logs import ReportsWorkerErrors, worker_failed
from hubtui.app.messages import ConvertRepo, EnqueueDownload
from hubtui.app.select import Select
from hubtui.app.session import UsesSession
from quant.units import format_bytes, format_count, parse_count

FAMILIES = [("All", "all"), ("Llama", "llama"), ("Mistral", "mistral")]
SORTS = [("Downloads", "downloads"), ("Likes", "likes"), ("Trending", "trending"), ("Updated", "updated")]
ACCESS = [("Any", "any"), ("Open", "open"), ("Gated", "gated")]
FORMATS = [("Any", "any"), ("Safetensors", "safetensors"), ("GGUF", "gguf")]
OFFICIAL = "◆"
LOCAL = "✓"
BADGE_ROWS = 15  # results sized in the background, top first: each is a few small hub requests
PARAMS_HINT = "[dim]e.g. 1B-8B[/]"
EMPTY_HINT = (
    "Type a name and press Enter to search; Enter on an empty box lists the most downloaded Llama and "
    "Mistral models. ↑/↓ then shows each repo's details and how it fits the target."
)


def param_span(text: str) -> tuple[float | None, float | None]:
    """'1B-8B', '500M-', '-3B' or '' -> (min, max) parameter counts, as `hubtui search --min/max-params`."""
    text = text.strip()
    if not text:
        return None, None
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a range: write MIN-MAX, e.g. 1B-8B, 500M- or -3B")
    lo, hi = parse_count(low or None), parse_count(high or None)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{text!r}: the minimum {low} is above the maximum {high}")
    return lo, hi


class BrowsePane(UsesSession, ReportsWorkerErrors, Vertical):
    BINDINGS = [
        Binding("ctrl+d", "download", "Download", id="browse.download", priority=True),
        Binding("ctrl+g", "download_gguf", "Download a GGUF", id="browse.download_gguf", priority=True),
        Binding("ctrl+r", "convert", "Convert", id="browse.convert", priority=True),
        Binding("ctrl+l", "cycle_family", "Family", id="browse.family", priority=True),
        Binding("ctrl+s", "cycle_sort", "Sort", id="browse.sort", priority=True),
    ]

    class Results(Message):
        def __init__(self, results: list[Any] | None, local: set[str], error: str = "") -> None:
            super().__init__()
            self.results = results
            self.local = local
            self.error = error

    class Marks(Message):
        def __init__(self, local: set[str]) -> None:
            super().__init__()
            self.local = local

    class Badge(Message):
        def __init__(self, repo_id: str, text: str) -> None:
            super().__init__()
            self.repo_id = repo_id
            self.text = text

    class Details(Message):
        def __init__(self, repo_id: str, details: Any, fit: str, error: str = "") -> None:
            super().__init__()
            self.repo_id = repo_id
            self.details = details
            self.fit = fit
            self.error = error

    class Fit(Message):
        def __init__(self, repo_id: str, text: str) -> None:
            super().__init__()
            self.repo_id = repo_id
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.details_by_id: dict[str, Any] = {}
        self._pending: Any = None  # the timer of a debounced details request
        self.current: str | None = None
        self.result_ids: list[str] = []
        self.local: set[str] = set()
        self._sources: Any = None
        self.applied = ("all", "downloads", "any", "any")  # the filters of the search on screen

    @property
    def sources(self) -> Any:
        if self._sources is None:
            from hubtui.app.services import RepoSources

            self._sources = RepoSources()
        return self._sources

    def compose(self) -> ComposeResult:
        with Horizontal(id="search-bar", classes="bar"):
            yield Input(placeholder="Search models (Enter)", id="search", compact=True)
            yield Horizontal(id="sort-bar")
        yield Horizontal(id="filter-bar", classes="bar")
        table: DataTable[str] = DataTable(cursor_type="row", id="results")
        table.add_column("Repo", key="repo")
        table.add_column("Fit", key="fit")
        table.add_column("Local", key="local")
        table.add_column("Params", key="params")
        table.add_column("Downloads", key="downloads")
        table.add_column("Likes", key="likes")
        table.add_column("Updated", key="updated")
        table.add_column("Access", key="access")
        yield table
        yield Static("", id="legend")
        with VerticalScroll(id="detail"):
            yield Static(EMPTY_HINT, id="detail-head")
            yield Static("", id="fit")
            yield Markdown("", id="card")

    def on_mount(self) -> None:
        self._legend()
        self.call_after_refresh(self._mount_filters)

    async def _mount_filters(self) -> None:
        """The filters' selects come right after the first frame (each is a small widget tree: start-up)."""
        await self.query_one("#sort-bar").mount_all(
            [
                Label("Family", classes="bar-label"),
                Select(FAMILIES, value="all", allow_blank=False, id="family", compact=True),
                Label("Sort", classes="bar-label"),
                Select(SORTS, value="downloads", allow_blank=False, id="sort", compact=True),
            ]
        )
        await self.query_one("#filter-bar").mount_all(
            [
                Label("Access", classes="bar-label"),
                Select(ACCESS, value="any", allow_blank=False, id="access", compact=True),
                Label("Format", classes="bar-label"),
                Select(FORMATS, value="any", allow_blank=False, id="format", compact=True),
                Label("Params", classes="bar-label"),
                Input(placeholder="any", id="params", compact=True, tooltip="e.g. 1B-8B, 500M- or -3B"),
                Static(PARAMS_HINT, id="params-hint"),
            ]
        )

    def _choice(self, selector: str, default: str) -> str:
        """A filter's value (its default while the filters are still being mounted)."""
        found = self.query(selector)
        value = found.first(Select).value if found else Select.BLANK
        return default if value in (Select.BLANK, Select.NULL) else str(value)

    def _legend(self) -> None:
        self.query_one("#legend", Static).update(
            f"[dim]{OFFICIAL} official  {LOCAL} downloaded  Fit for {escape(self.session.target.label)}: "
            "● GPU ◐ part ○ CPU ✗ no  ? unknown[/]"
        )

    # -- search -----------------------------------------------------------------------------------
    @on(Input.Submitted, "#search")
    @on(Input.Submitted, "#params")
    def _submitted(self) -> None:
        self.run_search()

    def _filters(self) -> tuple[str, str, str, str]:
        return (
            self._choice("#family", "all"),
            self._choice("#sort", "downloads"),
            self._choice("#access", "any"),
            self._choice("#format", "any"),
        )

    @on(Select.Changed)
    def _changed(self) -> None:
        """A filter the user changed (not one being mounted) searches again, when there is a search."""
        if self._filters() != self.applied and (self.result_ids or self.query_one("#search", Input).value):
            self.run_search()

    @on(Input.Changed, "#params")
    def _params_edited(self) -> None:
        self._check_params()

    def _check_params(self) -> tuple[float | None, float | None] | None:
        """The range, or None after marking the field and saying what is wrong with it."""
        if not self.query("#params-hint"):
            return None, None
        box = self.query_one("#params", Input)
        hint = self.query_one("#params-hint", Static)
        try:
            span = param_span(box.value)
        except ValueError as exc:
            box.add_class("-invalid")
            hint.update(f"[red]{escape(str(exc))}[/]")
            return None
        box.remove_class("-invalid")
        hint.update(PARAMS_HINT)
        return span

    def run_search(self) -> None:
        span = self._check_params()
        if span is None:  # nothing is searched: the results and the fit table on screen still agree
            self.app.notify("Fix the parameter range first (e.g. 1B-8B).", severity="warning")
            return
        query = self.query_one("#search", Input).value.strip() or None
        family, sort, access, fmt = self.applied = self._filters()
        self.query_one("#detail-head", Static).update("Searching…")
        self._search(query, None if family == "all" else str(family), sort, access, fmt, span)

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(
        self,
        query: str | None,
        family: str | None,
        sort: str,
        access: str,
        fmt: str,
        span: tuple[float | None, float | None],
    ) -> None:
        from hubtui.app.services import local_repo_ids
        from hubtui.hub.search import SearchFilters, search

        filters = SearchFilters(
            min_params=span[0],
            max_params=span[1],
            gated={"open": False, "gated": True}.get(access),
            has_safetensors=fmt == "safetensors",
            has_gguf=fmt == "gguf",
        )
        try:
            results = search(
                query, family=family, sort=sort, limit=50, filters=filters, endpoint=self.session.endpoint
            )
        except Exception as exc:  # shown as a note, never raised into the UI
            self.post_message(self.Results(None, set(), worker_failed("search", exc)))
            return
        try:
            local = local_repo_ids()
        except Exception as exc:
            worker_failed("listing downloaded repos", exc)
            local = set()
        self.post_message(self.Results(results, local))

    def on_browse_pane_results(self, message: Results) -> None:
        table = self.query_one("#results", DataTable)
        head = self.query_one("#detail-head", Static)
        if message.results is None:
            head.update(f"[b red]Search failed:[/] {escape(message.error)}")
            self.app.notify(message.error, title="Search failed", severity="error")
            return
        table.clear()
        self.local = message.local
        self.result_ids = [r.id for r in message.results]
        for r in message.results:
            table.add_row(
                r.id + (f" {OFFICIAL}" if r.official else ""),
                "…" if r.has_safetensors else "-",
                LOCAL if r.id in self.local else "",
                format_count(r.parameters),
                f"{r.downloads:,}",
                f"{r.likes:,}",
                r.last_modified.date().isoformat() if r.last_modified else "-",
                "gated" if r.gated else "open",
                key=r.id,
            )
        if not message.results:
            self.current = None
            head.update("No matching repos: loosen the filters, or Enter on an empty box lists popular ones.")
            self.query_one("#fit", Static).update("")
            self.query_one("#card", Markdown).update("")
            return
        n = len(message.results)
        head.update(f"{n} repo{'s' if n != 1 else ''}; ↑/↓ shows details.")
        if self.app.focused is not None and self in self.app.focused.ancestors:
            table.focus()  # not from another screen: focusing here would switch back to Browse
        table.move_cursor(row=0)
        self._load_details(message.results[0].id)
        self._size_results([r.id for r in message.results if r.has_safetensors][:BADGE_ROWS])

    # -- fit badges and downloaded marks ----------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="badges")
    def _size_results(self, repo_ids: list[str]) -> None:
        from hubtui.app.services import fit_badge, plan_for

        worker = get_current_worker()
        try:
            target = self.session.target.resolve()
        except Exception as exc:
            worker_failed("resolving the target", exc)
            return
        for repo_id in repo_ids:
            if worker.is_cancelled:
                return
            try:
                source, _ = self.sources.get(repo_id, self.session.endpoint)
                badge = fit_badge(plan_for(source, target, has_imatrix=self.session.has_imatrix))
            except Exception as exc:  # gated, not a supported layout, unreachable: no badge, no alarm
                worker_failed(f"sizing {repo_id}", exc)
                badge = "?"
            self.post_message(self.Badge(repo_id, badge))

    def on_browse_pane_badge(self, message: Badge) -> None:
        table = self.query_one("#results", DataTable)
        if message.repo_id in table.rows:
            table.update_cell(message.repo_id, "fit", message.text, update_width=True)

    def on_browse_pane_marks(self, message: Marks) -> None:
        self.local = message.local
        table = self.query_one("#results", DataTable)
        for repo_id in self.result_ids:
            if repo_id in table.rows:
                table.update_cell(repo_id, "local", LOCAL if repo_id in self.local else "")

    @work(thread=True, exclusive=True, exit_on_error=False, group="marks")
    def _refresh_marks(self) -> None:
        from hubtui.app.services import local_repo_ids

        try:
            self.post_message(self.Marks(local_repo_ids()))
        except Exception as exc:
            worker_failed("listing downloaded repos", exc)

    def local_changed(self) -> None:
        """A download or deletion: marks, and the sizes now read from the snapshot."""
        self.sources.forget()
        if self.result_ids:
            self._refresh_marks()
        if self.current:
            self._load_details(self.current)

    def target_changed(self) -> None:
        self._legend()
        table = self.query_one("#results", DataTable)
        sized = [i for i in self.result_ids if i in table.rows and table.get_cell(i, "fit") != "-"]
        for repo_id in sized:
            table.update_cell(repo_id, "fit", "…")
        if sized:
            self._size_results(sized[:BADGE_ROWS])
        if self.current:
            self._load_details(self.current)

    # -- details ----------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#results")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        repo_id = event.row_key.value
        if repo_id and repo_id != self.current:
            # wait until the cursor rests: each repo's details and sizing are a few hub requests
            if self._pending is not None:
                self._pending.stop()
            self.current = repo_id
            self.query_one("#detail-head", Static).update(f"[b]{escape(repo_id)}[/b]")
            self._pending = self.set_timer(0.3, lambda: self._load_details(repo_id))

    def _load_details(self, repo_id: str) -> None:
        self.current = repo_id
        self.query_one("#detail-head", Static).update(f"[b]{escape(repo_id)}[/b]: loading details…")
        self._details(repo_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="details")
    def _details(self, repo_id: str) -> None:
        from hubtui.app.services import plan_for, plan_markup
        from hubtui.hub.details import details

        try:
            d = details(repo_id, endpoint=self.session.endpoint)
        except Exception as exc:
            self.post_message(self.Details(repo_id, None, "", worker_failed(f"details of {repo_id}", exc)))
            return
        label = self.session.target.label
        self.post_message(self.Details(repo_id, d, f"[b]Fit[/b]: sizing {repo_id} for {label}…"))
        if not d.access:
            fit = "[b]Fit[/b]: no access to the files yet, so no sizes (see the access line above)."
        else:
            try:
                source, origin = self.sources.get(repo_id, self.session.endpoint)
                fit = plan_markup(
                    plan_for(source, self.session.target.resolve(), has_imatrix=self.session.has_imatrix)
                )
                fit += f"\n[dim](sized from the {origin})[/]"
            except Exception as exc:
                fit = f"[b]Fit[/b]: cannot size {repo_id}: {escape(worker_failed(f'sizing {repo_id}', exc))}"
        self.post_message(self.Fit(repo_id, fit))

    def on_browse_pane_fit(self, message: Fit) -> None:
        if message.repo_id == self.current:
            self.query_one("#fit", Static).update(message.text)

    def on_browse_pane_details(self, message: Details) -> None:
        if message.repo_id != self.current:
            return
        head = self.query_one("#detail-head", Static)
        if message.details is None:
            head.update(f"[b]{escape(message.repo_id)}[/b]\n[red]{escape(message.error)}[/]")
            self.query_one("#fit", Static).update("")
            self.query_one("#card", Markdown).update("")
            return
        d = message.details
        self.details_by_id[d.repo_id] = d
        access = ("[green]" if d.access else "[red]") + escape(d.access_note) + "[/]"
        here = f"   [green]{LOCAL} downloaded[/]" if d.repo_id in self.local else ""
        lines = [
            f"[b]{escape(d.repo_id)}[/b] @ {escape(d.revision)} ({d.commit[:12]}){here}",
            f"licence: {escape(d.license or '-')}   access: {access}",
            f"layout: {escape(d.layout.note)}   parameters: {format_count(d.parameters)}",
            f"files: {len(d.files)}, {format_bytes(d.total_size)}: "
            + escape(", ".join(f"{f.name} {format_bytes(f.size or 0)}" for f in d.files[:12]))
            + (" …" if len(d.files) > 12 else ""),
        ]
        lines += [
            f"published GGUF: {escape(g.name)} {g.quant or '?'} {format_bytes(g.size or 0)}"
            for g in d.gguf_files
        ]
        head.update("\n".join(lines))
        self.query_one("#fit", Static).update(message.fit)
        self.query_one("#card", Markdown).update(d.card or "*No model card.*")

    # -- actions ----------------------------------------------------------------------------------
    def action_download(self) -> None:
        if not self.current:
            self.app.notify("Search and highlight a repo first.", severity="warning")
            return
        d = self.details_by_id.get(self.current)
        gguf = None
        if d is not None and not d.layout.weights and d.gguf_files:
            quants = [g.quant for g in d.gguf_files if g.quant]
            gguf = "Q4_K_M" if "Q4_K_M" in quants else (quants[0] if quants else None)
        self.post_message(EnqueueDownload(self.current, gguf))

    def action_download_gguf(self) -> None:
        """Choose one of the repo's published GGUFs instead of the safetensors checkpoint."""
        from hubtui.app.modals import ChoiceScreen

        d = self.details_by_id.get(self.current or "")
        ggufs = [g for g in d.gguf_files if g.quant] if d is not None else []
        if d is None or not ggufs:
            self.app.notify("This repo publishes no GGUF files.", severity="warning")
            return
        by_quant: dict[str, list[Any]] = {}
        for g in ggufs:  # a split GGUF is several files of one type
            by_quant.setdefault(g.quant, []).append(g)
        choices = [
            (
                f"{q}  {format_bytes(sum(g.size or 0 for g in files))}  {files[0].name}"
                + (f" (+{len(files) - 1} parts)" if len(files) > 1 else ""),
                q,
            )
            for q, files in by_quant.items()
        ]

        def chosen(quant: str | None) -> None:
            if quant:
                self.post_message(EnqueueDownload(d.repo_id, quant))

        self.app.push_screen(ChoiceScreen(f"Download a GGUF of {d.repo_id}", choices), chosen)

    def action_convert(self) -> None:
        if self.current:
            self.post_message(ConvertRepo(self.current))
        else:
            self.app.notify("Search and highlight a downloaded repo first.", severity="warning")

    def action_cycle_family(self) -> None:
        self._cycle("#family", [v for _, v in FAMILIES])

    def action_cycle_sort(self) -> None:
        self._cycle("#sort", [v for _, v in SORTS])

    def _cycle(self, selector: str, values: list[str]) -> None:
        if not self.query(selector):
            return
        sel = self.query_one(selector, Select)
        sel.value = values[(values.index(str(sel.value)) + 1) % len(values)]
