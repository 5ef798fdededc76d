"""Smoke reports as text: a terminal summary and the Markdown page that goes into a field bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubtui.runner.smoke import SmokeReport
from quant.units import format_bytes


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def figures(report: SmokeReport) -> list[tuple[str, str]]:
    """(label, value) rows shared by the terminal and Markdown renderings."""
    d = report.to_dict()
    rows = [
        ("load time", _fmt(d["load_seconds"], ".2f", " s")),
        (
            "peak RSS",
            "n/a" if d["peak_rss_bytes"] is None else format_bytes(d["peak_rss_bytes"]),
        ),
        ("prompt speed", _fmt(d["prompt_tokens_per_s"], ".1f", " tokens/s")),
        ("generation speed", _fmt(d["generation_tokens_per_s"], ".1f", " tokens/s")),
        ("perplexity", _fmt(d["perplexity"], ".3f")),
        ("context", str(report.n_ctx)),
        ("GPU layers", _fmt(d["gpu_layers"], "d")),
    ]
    base = d["baseline"]
    if base and "perplexity_ratio" in base:
        rows += [
            ("baseline perplexity", _fmt(base["perplexity"], ".3f")),
            ("perplexity ratio", _fmt(base["perplexity_ratio"], ".4f")),
            ("mean KL divergence", _fmt(base["mean_kl"], ".4f")),
            ("top-1 agreement", _fmt(base["top1_agreement"] * 100, ".1f", " %")),
        ]
    return rows


def render_text(report: SmokeReport) -> str:
    lines = [f"{Path(report.path).name}: {report.verdict.upper()}"]
    for check in report.checks:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[check.level]
        lines.append(f"  [{mark}] {check.check}: {check.message}")
    if report.measurements:
        rows = figures(report)
        width = max(len(label) for label, _ in rows)
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


def render_markdown(report: SmokeReport, plan_lines: list[str] | None = None) -> str:
    d = report.to_dict()
    gen = (report.measurements.get("generation") or {}) if report.measurements else {}
    out = [
        f"# Smoke test: {Path(report.path).name}",
        "",
        f"**Verdict: {report.verdict}**" + (f" ({'; '.join(report.reasons)})" if report.reasons else ""),
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in figures(report)),
        "",
        "## Checks",
        "",
        *(f"- {c.level}: {c.check}: {c.message}" for c in report.checks),
    ]
    if gen.get("text"):
        out += ["", "## Sample reply", "", f"> {gen['prompt']}", "", "```", gen["text"].strip(), "```"]
    if plan_lines:
        out += ["", "## Plan for the target machine", "", *plan_lines]
    if d["gguf"]:
        g = d["gguf"]
        out += [
            "",
            "## File",
            "",
            f"- architecture {g['architecture']}, {g['n_params'] / 1e6:.1f} M parameters, {format_bytes(g['file_bytes'])}",
            f"- trained context {g['context_length']}, vocabulary {g['n_vocab_tokens']} tokens",
        ]
    return "\n".join(out) + "\n"
