"""Rebuild hubtui/runner/calibration.txt, the default text of `hubtui imatrix`, from public-domain and
permissively licensed sources installed on a Debian machine (docs/imatrix.md lists them and their licences).

Needs: `apt-get install libsword-utils sword-text-web sword-text-sparv` (the World English Bible and the
Reina-Valera 1909, both public domain) and a CPython standard library (PSF licence) for the code.
Usage: python scripts/make_calibration_text.py [OUT]
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

# (SWORD module, books) for the prose; chosen for narrative, poetry, letters and proverbs
PROSE = (
    ("engWEB2015eb", ("Genesis", "Ruth", "Psalms", "Proverbs", "Mark", "Acts", "James")),
    ("spaRV1909eb", ("Genesis", "Ruth", "Proverbs", "Mark", "James")),
)
CODE = ("textwrap.py", "json/decoder.py", "heapq.py", "bisect.py", "fractions.py", "shlex.py", "string.py")
PROSE_CAP = {"engWEB2015eb": 150_000, "spaRV1909eb": 110_000}


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


def main(out: Path) -> None:
    en = prose(*PROSE[0], PROSE_CAP[PROSE[0][0]])
    es = prose(*PROSE[1], PROSE_CAP[PROSE[1][0]])
    src = code()
    # interleave sections so every chunk of a short run is not all one kind of text
    parts_en, parts_es, parts_code = en.split("\n\n"), es.split("\n\n"), src.split("\n\n\n")
    sections = []
    step_en, step_es, step_code = (max(1, len(p) // 24) for p in (parts_en, parts_es, parts_code))
    for i in range(24):
        for parts, step in ((parts_en, step_en), (parts_code, step_code), (parts_es, step_es)):
            chunk = parts[i * step : (i + 1) * step] if i < 23 else parts[i * step :]
            if chunk:
                sections.append(("\n\n" if parts is not parts_code else "\n\n\n").join(chunk))
    out.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parents[1] / "hubtui/runner/calibration.txt"
    )
