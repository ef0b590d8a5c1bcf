"""Export executed notebooks to self-contained HTML that works offline.

nbconvert's lab template links require.js, MathJax and mermaid from a CDN. The ``offline`` template
here drops those scripts; LaTeX in markdown cells is converted to MathML (rendered natively by current
browsers) with ``latex2mathml``, and figures are already inline base64 PNG.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter

TEMPLATES = Path(__file__).parent / "templates"
# $$display$$ first, then $inline$ (not preceded by a backslash or followed by a digit, like prices).
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)")


def markdown_math_to_mathml(text: str) -> str:
    """Replace ``$...$`` and ``$$...$$`` in markdown with MathML; leave it as is if it does not parse."""

    def repl(match: re.Match[str], display: str) -> str:
        try:
            return latex_to_mathml(match.group(1).strip(), display=display).replace("\n", "")
        except Exception:  # an unparseable formula stays readable as TeX instead of breaking the export
            return match.group(0)

    text = _DISPLAY.sub(lambda m: repl(m, "block"), text)
    return _INLINE.sub(lambda m: repl(m, "inline"), text)


def export_html(nb: nbformat.NotebookNode, out_path: Path, title: str | None = None) -> Path:
    """Write ``nb`` as offline HTML to ``out_path`` (atomically) and return the path."""
    nb = nbformat.from_dict(nb)  # a copy: the caller's notebook keeps its TeX
    nb.metadata["title"] = title or out_path.stem
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_math_to_mathml(cell.source)
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nb)
    tmp = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
