"""Browse: search the hub for Llama and Mistral checkpoints, with details and a fit table per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Markdown, Select, Static

from hubtui.app.imports import load

FAMILIES = [("All", "all"), ("Llama", "llama"), ("Mistral", "mistral")]
FILTERS = [
    ("Any", "any"),
    ("Open", "open"),
    ("Gated", "gated"),
    ("Safetensors", "safetensors"),
    ("GGUF", "gguf"),
]
SORTS = [("Downloads", "downloads"), ("Likes", "likes"), ("Trending", "trending"), ("Updated", "updated")]


def _human(n: int | None) -> str:
    load("hubtui.commands.search")
    from hubtui.commands.search import _human

    return _human(n)


def _param_span(text: str) -> tuple[float | None, float | None]:
    """'1B-8B', '500M-', '-3B' or '' -> (min, max) parameter counts, parsed as `hubtui search --min-params`."""
    import click

    load("hubtui.commands.search")
    from hubtui.commands.search import _count

    if not text:
        return None, None
    low, sep, high = text.partition("-")
    if not sep:
        raise ValueError(f"parameter range {text!r}: write MIN-MAX, e.g. 1B-8B, 500M- or -3B")
    try:
        return _count(low or None), _count(high or None)
    except click.BadParameter as exc:
        raise ValueError(f"parameter range: {exc.message}") from None


class BrowsePane(Vertical):
    BINDINGS = [
        Binding("ctrl+d", "download", "Download", id="browse.download", priority=True),
        Binding("ctrl+g", "download_gguf", "Download GGUF", id="browse.download_gguf", priority=True),
        Binding("ctrl+o", "open_convert", "Convert", id="browse.convert", priority=True),
        Binding("ctrl+l", "cycle_family", "Family", id="browse.family", priority=True),
        Binding("ctrl+s", "cycle_sort", "Sort", id="browse.sort", priority=True),
    ]

    class Results(Message):
        def __init__(self, results: list[Any] | None, error: str = "") -> None:
            super().__init__()
            self.results = results
            self.error = error

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

    def compose(self) -> ComposeResult:
        with Horizontal(id="search-bar"):
            yield Input(placeholder="Search models, Enter searches", id="search")
            yield Select(FAMILIES, value="all", allow_blank=False, id="family")
            yield Select(SORTS, value="downloads", allow_blank=False, id="sort")
            yield Select(FILTERS, value="any", allow_blank=False, id="filter")
            yield Input(placeholder="1B-8B", id="params", tooltip="parameter range, e.g. 1B-8B, 500M-, -3B")
        table: DataTable[str] = DataTable(cursor_type="row", id="results")
        table.add_columns("Repo", "Params", "Downloads", "Likes", "Updated", "Access")
        yield table
        with VerticalScroll(id="detail"):
            yield Static("Type a name and press Enter to search.", id="detail-head")
            yield Static("", id="fit")
            yield Markdown("", id="card")

    # -- search -----------------------------------------------------------------------------------
    @on(Input.Submitted, "#search")
    @on(Input.Submitted, "#params")
    def _submitted(self) -> None:
        self.run_search()

    @on(Select.Changed)
    def _changed(self) -> None:
        if self.query_one("#results", DataTable).row_count or self.query_one("#search", Input).value:
            self.run_search()

    def run_search(self) -> None:
        query = self.query_one("#search", Input).value.strip() or None
        family = self.query_one("#family", Select).value
        sort = str(self.query_one("#sort", Select).value)
        kind = str(self.query_one("#filter", Select).value)
        span = self.query_one("#params", Input).value.strip()
        self.query_one("#detail-head", Static).update("Searching…")
        self._search(query, None if family == "all" else str(family), sort, kind, span)

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(self, query: str | None, family: str | None, sort: str, kind: str, span: str) -> None:
        load("hubtui.hub")
        from hubtui.hub import SearchFilters, search

        try:
            low, high = _param_span(span)
        except ValueError as exc:
            self.post_message(self.Results(None, str(exc)))
            return
        filters = SearchFilters(
            min_params=low,
            max_params=high,
            gated={"open": False, "gated": True}.get(kind),
            has_safetensors=kind == "safetensors",
            has_gguf=kind == "gguf",
        )
        try:
            results = search(
                query, family=family, sort=sort, limit=50, filters=filters, endpoint=self.app.endpoint
            )
        except Exception as exc:  # shown as a note, never raised into the UI
            self.post_message(self.Results(None, str(exc)))
            return
        self.post_message(self.Results(results))

    def on_browse_pane_results(self, message: Results) -> None:
        table = self.query_one("#results", DataTable)
        table.clear()
        head = self.query_one("#detail-head", Static)
        if message.results is None:
            head.update(f"[b red]Search failed:[/] {message.error}")
            self.app.notify(message.error, title="Search failed", severity="error")
            return
        for r in message.results:
            table.add_row(
                r.id + (" *" if r.official else ""),
                _human(r.parameters),
                f"{r.downloads:,}",
                f"{r.likes:,}",
                r.last_modified.date().isoformat() if r.last_modified else "-",
                "gated" if r.gated else "open",
                key=r.id,
            )
        if not message.results:
            head.update("No matching repos.")
        else:
            head.update(f"{len(message.results)} repos; ↑/↓ shows details (* official).")
            table.focus()
            table.move_cursor(row=0)
            self._load_details(message.results[0].id)

    # -- details ----------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#results")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        repo_id = event.row_key.value
        if repo_id and repo_id != self.current:
            # wait until the cursor rests: each repo's details and sizing are a few hub requests
            if self._pending is not None:
                self._pending.stop()
            self.current = repo_id
            self.query_one("#detail-head", Static).update(f"[b]{repo_id}[/b]")
            self._pending = self.set_timer(0.3, lambda: self._load_details(repo_id))

    def _load_details(self, repo_id: str) -> None:
        self.current = repo_id
        self.query_one("#detail-head", Static).update(f"[b]{repo_id}[/b]: loading details…")
        self._details(repo_id, self.app.target_name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="details")
    def _details(self, repo_id: str, target_name: str) -> None:
        load("hubtui.hub")
        from hubtui.hub import details

        try:
            d = details(repo_id, endpoint=self.app.endpoint)
        except Exception as exc:
            self.post_message(self.Details(repo_id, None, "", str(exc)))
            return
        self.post_message(self.Details(repo_id, d, f"[b]Fit[/b]: sizing {repo_id} for {target_name}…"))
        if not d.access:
            fit = "[b]Fit[/b]: no access to the files yet, so no sizes (see the access line above)."
        else:
            try:
                fit = self._fit_text(repo_id, target_name)
            except Exception as exc:
                fit = f"[b]Fit[/b]: cannot size {repo_id}: {exc}"
        self.post_message(self.Fit(repo_id, fit))

    def _fit_text(self, repo_id: str, target_name: str) -> str:
        """The downloaded snapshot if there is one, else (as `hubtui plan OWNER/NAME`) a stand-in built
        from the repo's config, tokenizer and safetensors headers, with no weights fetched."""
        import tempfile

        from hubtui.app.services import fit_table_text, snapshot_dir

        snap = snapshot_dir(repo_id)
        if snap is not None:
            return fit_table_text(snap, target_name) + "\n[dim](sized from the downloaded checkpoint)[/]"
        load("hubtui.commands.plan")
        from hubtui.commands.plan import headers_only_checkpoint

        with tempfile.TemporaryDirectory(prefix="hubtui-fit-") as tmp:
            try:
                stand_in = headers_only_checkpoint(repo_id, Path(tmp), endpoint=self.app.endpoint)
                return (
                    fit_table_text(stand_in, target_name)
                    + "\n[dim](sized from headers; nothing downloaded)[/]"
                )
            except Exception as exc:  # name the repo, not the temporary stand-in folder
                raise RuntimeError(
                    str(exc).replace(str(Path(tmp) / repo_id.split("/")[-1]), repo_id)
                ) from None

    def on_browse_pane_fit(self, message: Fit) -> None:
        if message.repo_id == self.current:
            self.query_one("#fit", Static).update(message.text)

    def on_browse_pane_details(self, message: Details) -> None:
        if message.repo_id != self.current:
            return
        head = self.query_one("#detail-head", Static)
        if message.details is None:
            head.update(f"[b]{message.repo_id}[/b]\n[red]{message.error}[/]")
            self.query_one("#fit", Static).update("")
            self.query_one("#card", Markdown).update("")
            return
        d = message.details
        self.details_by_id[d.repo_id] = d
        from hubtui.units import format_bytes

        access = ("[green]" if d.access else "[red]") + d.access_note + "[/]"
        lines = [
            f"[b]{d.repo_id}[/b] @ {d.revision} ({d.commit[:12]})",
            f"licence: {d.license or '-'}   access: {access}",
            f"layout: {d.layout.note}   parameters: {_human(d.parameters)}",
            f"files: {len(d.files)}, {format_bytes(d.total_size)}: "
            + ", ".join(f"{f.name} {format_bytes(f.size or 0)}" for f in d.files[:12])
            + (" …" if len(d.files) > 12 else ""),
        ]
        lines += [
            f"published GGUF: {g.name} {g.quant or '?'} {format_bytes(g.size or 0)}" for g in d.gguf_files
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
        self.app.enqueue_download(self.current, gguf)

    def action_download_gguf(self) -> None:
        """Choose one of the repo's published GGUFs instead of the safetensors checkpoint."""
        from hubtui.app.modals import ChoiceScreen
        from hubtui.app.services import human_bytes

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
                f"{q}  {human_bytes(sum(g.size or 0 for g in files))}  {files[0].name}"
                + (f" (+{len(files) - 1} parts)" if len(files) > 1 else ""),
                q,
            )
            for q, files in by_quant.items()
        ]

        def chosen(quant: str | None) -> None:
            if quant:
                self.app.enqueue_download(d.repo_id, quant)

        self.app.push_screen(ChoiceScreen(f"Download a GGUF of {d.repo_id}", choices), chosen)

    def action_open_convert(self) -> None:
        if self.current:
            self.app.open_convert_for_repo(self.current)

    def action_cycle_family(self) -> None:
        self._cycle("#family", [v for _, v in FAMILIES])

    def action_cycle_sort(self) -> None:
        self._cycle("#sort", [v for _, v in SORTS])

    def _cycle(self, selector: str, values: list[str]) -> None:
        sel = self.query_one(selector, Select)
        sel.value = values[(values.index(str(sel.value)) + 1) % len(values)]
