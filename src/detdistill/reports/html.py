"""The demo's one-page HTML report (plain HTML, images referenced by relative path)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any


def _markdown_table_to_html(table: str) -> str:
    rows = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|---")]
    out = ["<table>"]
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
    out.append("</table>")
    notes = [line for line in table.splitlines() if line and not line.startswith("|")]
    out += [f"<p>{html.escape(n)}</p>" for n in notes]
    return "\n".join(out)


def write_index(out_dir: str | Path, *, table: str, images: dict[str, Path], recipe: dict[str, Any],
                seconds: dict[str, float]) -> Path:
    out_dir = Path(out_dir)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>detdistill demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}</style></head><body>",
        "<h1>detdistill demo: knowledge distillation for Faster R-CNN</h1>",
        "<p>Teacher, baseline student (no teacher) and distilled student (Chen et al. 2017, paper defaults), "
        "trained on the embedded synthetic shapes and scored on its held-out split.</p>",
        "<h2>Results</h2>", _markdown_table_to_html(table),
    ]
    for title, path in images.items():
        rel = os.path.relpath(path, out_dir)
        parts += [f"<h2>{html.escape(title)}</h2>", f"<img src='{html.escape(rel)}' alt='{html.escape(title)}'>"]
    parts.append("<h2>Recipe</h2><pre>" + html.escape("\n".join(f"{k}: {v}" for k, v in recipe.items())) + "</pre>")
    parts.append("<p>Time (s): " + html.escape(", ".join(f"{k} {v:.0f}" for k, v in seconds.items())) + "</p>")
    parts.append("<p>Files: <a href='table.md'>table.md</a>, <a href='table.csv'>table.csv</a>, "
                 "<a href='summary.json'>summary.json</a></p></body></html>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts))
    return path
