"""The demo's report: the table (Markdown/CSV), ``summary.json`` and the one-page ``index.html``.

Takes plain data (rows as dicts keyed by model name) so it stays independent of how the models were trained.
Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..utils import atomic_write_text

ORDER = ("teacher", "baseline", "distilled")
CSV_FIELDS = ("name", "mAP50", "AP", "images_per_s", "speed_up", "steps", "recipe", "params", "gflops")


def _ordered(rows: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    names = [n for n in ORDER if n in rows] + [n for n in rows if n not in ORDER]
    return [rows[n] for n in names]


def _spread_cell(spread: Mapping[str, Any] | None, name: str) -> str:
    if not spread or name not in spread.get("std", {}):
        return "—"
    return f"±{spread['std'][name]:.3f}"


def format_table(rows: Mapping[str, Mapping[str, Any]], spread: Mapping[str, Any] | None = None) -> str:
    """The demo's table as Markdown (also what is printed); model names left-aligned, numbers right-aligned."""
    n = spread.get("seeds") if spread else None
    spread_head = f"mAP@0.5 seed spread (std, {n} seeds)" if n else "mAP@0.5 seed spread"
    lines = [f"| model | recipe | steps | mAP@0.5 | {spread_head} | COCO AP | params | CPU images/s | "
             "speed-up vs teacher |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _ordered(rows):
        lines.append(f"| {r['name']} | {r['recipe']} | {r['steps']} | {r['mAP50']:.3f} | "
                     f"{_spread_cell(spread, r['name'])} | {r['AP']:.3f} | {r['params'] / 1e6:.2f} M | "
                     f"{r['images_per_s']:.1f} | {r['speed_up']:.2f}x |")
    return "\n".join(lines)


def gap_closed(teacher: float, baseline: float, distilled: float) -> float | None:
    """Share of the teacher-baseline gap that distillation closed; None when the gap is not positive."""
    gap = teacher - baseline
    return None if gap <= 0 else (distilled - baseline) / gap


def gap_sentence(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The teacher-baseline gap and what distillation did with it, in words."""
    t, b, d = (rows[n]["mAP50"] for n in ORDER)
    steps = rows["baseline"]["steps"]
    closed = gap_closed(t, b, d)
    head = (f"The teacher scores {t:.3f} mAP@0.5 on the test split; the same student trained for the same "
            f"{steps} steps without a teacher (the baseline) scores {b:.3f}")
    if closed is None:
        return (head + f", so the baseline already matches the teacher: there is no gap for distillation to "
                f"close. The distilled student scores {d:.3f} ({d - b:+.3f} against the baseline).")
    return (head + f": a gap of {t - b:.3f}. The distilled student scores {d:.3f}, {d - b:+.3f} against the "
            f"baseline, so distillation closed {closed * 100:.0f} % of the gap "
            f"(share closed = (distilled − baseline) / (teacher − baseline)).")


def headline(rows: Mapping[str, Mapping[str, Any]], student: str = "distilled") -> str:
    t, s = rows["teacher"], rows[student]
    return (f"student/teacher images/s = {s['images_per_s'] / t['images_per_s']:.2f}x at "
            f"{s['mAP50'] / t['mAP50'] * 100:.0f} % of the teacher's mAP@0.5")


def write_csv(rows: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for r in _ordered(rows):
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in CSV_FIELDS})
    return atomic_write_text(buf.getvalue(), path)


def write_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    return atomic_write_text(json.dumps(summary, indent=2, default=str) + "\n", path)


def _table_html(table: str) -> str:
    rows = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|:")]
    out = ["<table>"]
    for i, line in enumerate(rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


STYLE = ("body{font-family:sans-serif;max-width:1240px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}"
         "table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}th{background:#f3f3f3}"
         ".headline{font-size:1.15em;background:#f6f8fa;border-left:4px solid #e69500;padding:0.5em 0.8em}"
         "img{max-width:100%;border:1px solid #eee}pre{background:#f6f8fa;padding:0.6em;overflow-x:auto}"
         ".note{color:#555}")


def write_page(out_dir: str | Path, summary: Mapping[str, Any], images: Mapping[str, tuple[Path, str]]) -> Path:
    """``index.html``: what you are looking at, the headline, the table, the figures with a line each, the recipe.

    ``images``: section title -> (PNG path, one sentence saying what to look for).
    """
    out_dir = Path(out_dir)
    rows = summary["rows"]
    recipe = summary["recipe"]
    spread = summary.get("seed_spread")
    steps = recipe["steps_per_model"]
    about = (
        f"Three Faster R-CNN detectors trained on the embedded synthetic shapes (six classes in three look-alike "
        f"pairs; nothing downloaded): a large <b>teacher</b> ({html.escape(recipe['teacher'])}), and a small, lean "
        f"<b>student</b> ({html.escape(recipe['student'])}, fewer proposals and detections per image) trained "
        f"twice from the same initial weights on the same data order: once on the labels alone (the "
        f"<b>baseline</b>) and once also learning from the teacher (the <b>distilled</b> student, knowledge "
        f"distillation with the default recipe, listed at the end of this page). Every model trained the same {steps['teacher']} steps. All three "
        f"are scored on a held-out test split of {recipe['num_test']} images, and timed side by side on this "
        f"machine's CPU, one image at a time with {summary['threads']} thread(s). The point: the student is "
        f"several times faster than the teacher, and distillation should bring its accuracy closer to the "
        f"teacher's than training on the labels alone.")
    seed_note = ""
    if spread:
        seed_note = (f"This page is one seed (seed {summary['seed']}). Over {spread['seeds']} seeds "
                     f"({html.escape(spread['source'])}) the students' mAP@0.5 spreads by "
                     f"±{max(spread['std'].get('baseline', 0), spread['std'].get('distilled', 0)):.3f} (std), and "
                     f"distilled − baseline = {spread['diff_mean']:+.3f} (95 % CI [{spread['ci'][0]:+.3f}, "
                     f"{spread['ci'][1]:+.3f}]): read a single-seed difference smaller than that spread as noise.")
    elif summary.get("spread_note"):
        seed_note = f"This page is one seed (seed {summary['seed']}). " + html.escape(summary["spread_note"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>detdistill demo</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>detdistill demo: a small detector that learns from a large one</h1>",
        "<h2>What you are looking at</h2>", f"<p>{about}</p>",
        f"<p class='headline'>{html.escape(headline(rows))}</p>",
        *([f"<p class='note'><b>Quick demo</b>: every model trained only {steps['teacher']} steps, so these "
           "numbers show that the pipeline and the page work, not what distillation does. Run "
           "<code>detdistill demo</code> for the real comparison.</p>"] if summary.get("quick") else []),
        "<h2>Results (test split)</h2>", _table_html(summary["table"]),
        f"<p>{html.escape(gap_sentence(rows))}</p>",
    ]
    if seed_note:
        parts.append(f"<p class='note'>{seed_note}</p>")
    for title, (path, caption) in images.items():
        rel = os.path.relpath(path, out_dir)
        parts += [f"<h2>{html.escape(title)}</h2>", f"<p class='note'>{html.escape(caption)}</p>",
                  f"<img src='{html.escape(rel)}' alt='{html.escape(title)}'>"]
    schedule = ", ".join(f"{name} {n} steps" for name, n in steps.items())
    parts.append("<h2>Recipe</h2>")
    parts.append(f"<p>Schedule (the same for every model): {html.escape(schedule)}; batch {recipe['batch_size']}, "
                 f"SGD lr {recipe['lr']}, validation every {recipe['eval_every']} steps on {recipe['num_val']} "
                 f"images; the teacher first, over {recipe.get('teacher_processes', 1)} data-parallel process(es), "
                 f"then the students on {summary['threads']} thread(s) each, {recipe['jobs']} process(es) side "
                 "by side.</p>")
    parts.append("<pre>" + html.escape(json.dumps({"demo": recipe, "distillation": summary.get("distill", {})},
                                                  indent=1)) + "</pre>")
    parts.append("<p>Time (s): " + html.escape(", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()))
                 + "</p>")
    parts.append("<p>Files: <a href='table.md'>table.md</a>, <a href='table.csv'>table.csv</a>, "
                 "<a href='summary.json'>summary.json</a></p></body></html>")
    return atomic_write_text("\n".join(parts), out_dir / "index.html")
