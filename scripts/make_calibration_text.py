"""Rebuild hubtui/runner/calibration.txt, the default text of `hubtui imatrix`, from public-domain and
permissively licensed sources installed on a Debian machine (docs/imatrix.md lists them and their licences).

Needs: `apt-get install libsword-utils sword-text-web sword-text-sparv` (the World English Bible and the
Reina-Valera 1909, both public domain), a CPython standard library (PSF licence) for the code, and Django's
wheel (BSD-3-Clause) for the sentences of its translation catalogues in six more languages; the wheel is
fetched with `pip download` unless --django-wheel names one.
Usage: python scripts/make_calibration_text.py [OUT] [--django-wheel django-5.2.19-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

# (SWORD module, books) for the prose; chosen for narrative, poetry, letters and proverbs
PROSE = (
    ("engWEB2015eb", ("Genesis", "Ruth", "Psalms", "Proverbs", "Mark", "Acts", "James")),
    ("spaRV1909eb", ("Genesis", "Ruth", "Proverbs", "Mark", "James")),
)
CODE = ("textwrap.py", "json/decoder.py", "heapq.py", "bisect.py", "fractions.py", "shlex.py", "string.py")
PROSE_CAP = {"engWEB2015eb": 150_000, "spaRV1909eb": 110_000}
# Django's translation catalogues: whole sentences (messages, help texts) as translators wrote them
DJANGO = "django==5.2.19"
LANGS = ("de", "fr", "ru", "zh_Hans", "ja", "ar")
LANG_CAP = 12_000


def verses(module: str, books: tuple[str, ...]) -> list[str]:
    """Plain-text verses of `books` from a SWORD module (markup and footnotes removed)."""
    raw = subprocess.run(["mod2imp", module], check=True, capture_output=True, text=True).stdout
    out, keep = [], False
    for line in raw.splitlines():
        if line.startswith("$$$"):
            book = line[3:].rsplit(" ", 1)[0]
            keep = book in books and not line.endswith(":0")
            continue
        if keep:
            text = re.sub(r"<note[^>]*>.*?</note>", "", line)
            text = html.unescape(re.sub(r"<[^>]+>", " ", text))
            text = re.sub(r"\s+", " ", text).strip()
            text = re.sub(r" ([,.;:!?’”»)])", r"\1", re.sub(r"([“‘¿¡«(]) ", r"\1", text))
            if text:
                out.append(text)
    return out


def prose(module: str, books: tuple[str, ...], cap: int) -> str:
    """Verses joined into paragraphs of about eight verses, up to `cap` bytes."""
    vs = verses(module, books)
    paras = [" ".join(vs[i : i + 8]) for i in range(0, len(vs), 8)]
    out, size = [], 0
    for p in paras:
        size += len(p.encode()) + 2
        if size > cap:
            break
        out.append(p)
    return "\n\n".join(out)


def code() -> str:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return "\n\n".join((lib / name).read_text(encoding="utf-8") for name in CODE)


def _po_strings(text: str) -> list[str]:
    """The translated strings (msgstr, plural forms too) of a .po file; the header entry is skipped."""
    out = []
    for m in re.finditer(r'^msgstr(?:\[\d+\])? ((?:"(?:[^"\\]|\\.)*"\n?)+)', text, re.M):
        pieces = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
        s = "".join(pieces)
        s = re.sub(r"\\(.)", lambda e: {"n": " ", "t": " "}.get(e.group(1), e.group(1)), s)
        s = re.sub(r"\s+", " ", s).strip()
        if s and not s.startswith("Project-Id-Version"):
            out.append(s)
    return out


def ui_sentences(wheel: Path, lang: str, cap: int) -> str:
    """Sentences from Django's catalogues for `lang` (core, then contrib apps), deduplicated, up to `cap` bytes.

    Only strings with a sentence's shape are kept (four words or more, or 12 characters or more in scripts
    written without spaces), so the text is running language rather than button labels."""
    seen: set[str] = set()
    lines, size = [], 0
    with zipfile.ZipFile(wheel) as zf:
        catalogues = (n for n in zf.namelist() if f"/locale/{lang}/LC_MESSAGES/" in n and n.endswith(".po"))
        names = sorted(catalogues, key=lambda n: (not n.startswith("django/conf/"), n))  # the core one first
        for name in names:
            for s in _po_strings(zf.read(name).decode("utf-8")):
                spaced = len(s.split()) >= 4
                unspaced = lang in ("zh_Hans", "ja") and len(s) >= 12
                if s in seen or not (spaced or unspaced):
                    continue
                seen.add(s)
                size += len(s.encode()) + 1
                if size > cap:
                    return "\n".join(lines)
                lines.append(s)
    return "\n".join(lines)


def django_wheel(given: Path | None, tmp: Path) -> Path:
    if given is not None:
        return given
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp), DJANGO]
    subprocess.run(cmd, check=True)
    return next(tmp.glob("Django-*.whl"), None) or next(tmp.glob("django-*.whl"))


def main(out: Path, wheel: Path) -> None:
    en = prose(*PROSE[0], PROSE_CAP[PROSE[0][0]])
    es = prose(*PROSE[1], PROSE_CAP[PROSE[1][0]])
    src = code()
    ui = {lang: ui_sentences(wheel, lang, LANG_CAP) for lang in LANGS}
    # interleave sections so every chunk of a short run is not all one kind of text
    parts_en, parts_es, parts_code = en.split("\n\n"), es.split("\n\n"), src.split("\n\n\n")
    sections = []
    step_en, step_es, step_code = (max(1, len(p) // 24) for p in (parts_en, parts_es, parts_code))
    # the other languages: four rounds each, one language after another in turn
    ui_parts = {lang: _quarters(text) for lang, text in ui.items()}
    for i in range(24):
        for parts, step in ((parts_en, step_en), (parts_code, step_code), (parts_es, step_es)):
            chunk = parts[i * step : (i + 1) * step] if i < 23 else parts[i * step :]
            if chunk:
                sections.append(("\n\n" if parts is not parts_code else "\n\n\n").join(chunk))
        lang = LANGS[i % len(LANGS)]
        sections.append(ui_parts[lang][i // len(LANGS)])
    out.write_text("\n\n".join(s for s in sections if s) + "\n", encoding="utf-8")
    print(f"{out}: {out.stat().st_size} bytes")


def _quarters(text: str) -> list[str]:
    lines = text.split("\n")
    step = -(-len(lines) // 4)
    return ["\n".join(lines[i * step : (i + 1) * step]) for i in range(4)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "out", nargs="?", type=Path, default=Path(__file__).parents[1] / "hubtui/runner/calibration.txt"
    )
    ap.add_argument("--django-wheel", type=Path, help=f"{DJANGO}'s wheel (default: pip download it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        main(args.out, django_wheel(args.django_wheel, Path(tmp)))
