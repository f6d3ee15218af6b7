"""The search's outputs: ``candidates.csv``, ``summary.json``, ``shrink.png`` and ``shrink.html``.

The page uses the demo page's style sheet; the figure is written atomically like every other figure.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ..reports.demo_page import STYLE
from ..utils import atomic_write_text

from .result import ShrinkResult

CSV_FIELDS = ("id", "kind", "family", "params", "gflops", "compression", "median_ms", "p10_ms", "p90_ms",
              "images_per_s", "speed_up", "feasible", "front", "shortlisted", "last_rung", "last_rung_steps",
              "val_mAP50", "val_AP")


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One line per candidate: size, measured latency (median, p10, p90), speed-up, target and front flags."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*CSV_FIELDS, "knobs"], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r.get(k) for k in CSV_FIELDS}, "knobs": json.dumps(r.get("knobs", {}), sort_keys=True)})
    return atomic_write_text(buf.getvalue(), path)


def pareto_figure(result: ShrinkResult, path: str | Path) -> Path:
    """Left: every candidate's parameters against images/s, the front and the target. Right: validation
    mAP@0.5 of the distilled candidates and the teacher against images/s, the chosen one's test score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reports.plots import save_figure

    rows = result.candidates
    teacher_ips = result.teacher["timing"]["images_per_s"]
    if result.target_value.get("speed_up") is not None:
        target_ips = teacher_ips * float(result.target_value["speed_up"])
    else:
        target_ips = 1000.0 / float(result.target_value["ms"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for kind, marker in (("zoo", "o"), ("lowrank", "s")):
        pts = [r for r in rows if r["kind"] == kind]
        left.scatter([r["images_per_s"] for r in pts], [r["params"] / 1e6 for r in pts], marker=marker, s=22,
                     alpha=0.55, color="tab:blue" if kind == "zoo" else "tab:purple",
                     label=f"{'zoo' if kind == 'zoo' else 'low-rank'} candidates ({len(pts)})")
    front = sorted((r for r in rows if r["front"]), key=lambda r: r["images_per_s"])
    left.plot([r["images_per_s"] for r in front], [r["params"] / 1e6 for r in front], color="tab:orange", lw=1.5,
              marker="o", ms=4, label=f"Pareto front ({len(front)})")
    chosen = result.chosen_row()
    for ax in (left, right):
        ax.axvline(target_ips, color="tab:red", ls="--", lw=1, label=f"target ({result.target})")
        ax.set_xscale("log")
        ax.set_xlabel(f"CPU images/s (batch 1, {result.threads} thread(s), untrained candidates)")
        ax.grid(alpha=0.3)
    left.scatter([teacher_ips], [result.teacher["params"] / 1e6], marker="D", color="tab:gray", s=50, label="teacher")
    left.scatter([chosen["images_per_s"]], [chosen["params"] / 1e6], marker="*", color="gold", edgecolor="k", s=220,
                 zorder=5, label=f"chosen: {chosen['id']}")
    left.set_yscale("log")
    left.set_ylabel("parameters (M)")
    left.set_title("every candidate: size vs speed")
    left.legend(fontsize=7, loc="best")

    trained = [r for r in rows if r["val_mAP50"] is not None]
    right.scatter([r["images_per_s"] for r in trained], [r["val_mAP50"] for r in trained], color="tab:blue", s=30,
                  label="distilled, validation at the last rung each reached")
    for r in trained:
        right.annotate(r["id"], (r["images_per_s"], r["val_mAP50"]), textcoords="offset points", xytext=(4, 4),
                       fontsize=6)
    right.scatter([teacher_ips], [result.teacher["val"]["metrics"]["mAP50"]], marker="D", color="tab:gray", s=50,
                  label="teacher (validation)")
    right.scatter([chosen["images_per_s"]], [chosen["val_mAP50"]], marker="*", color="gold", edgecolor="k", s=220,
                  zorder=5, label="chosen (validation)")
    fs = result.final_speed
    # The trained student's speed-up was measured against the teacher in its own run; on this axis it sits at
    # that ratio times the teacher's images/s of the table, so the two runs' machine states do not mix.
    final_ips = teacher_ips * fs["speed_up"]
    right.scatter([final_ips], [result.final["distilled"]["mean"]["mAP50"]], marker="P", color="tab:orange", s=90,
                  zorder=5, label=f"chosen, {result.final_steps} steps, trained speed ({result.final['distilled']['split']})")
    if "baseline" in result.final:
        right.scatter([final_ips], [result.final["baseline"]["mean"]["mAP50"]], marker="X", color="tab:green", s=80,
                      zorder=5, label=f"same without the teacher ({result.final['baseline']['split']})")
    right.set_ylabel("mAP@0.5")
    right.set_title("accuracy vs speed")
    right.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def _table_html(rows: Sequence[dict[str, Any]], chosen: str) -> str:
    head = ("candidate", "kind", "params (M)", "GFLOPs", "rank compression", "median ms [p10, p90]", "speed-up",
            "meets target", "front", "val mAP@0.5", "val AP")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    order = sorted(rows, key=lambda r: (r["val_mAP50"] is None, -(r["val_mAP50"] or 0), r["median_ms"]))
    for r in order:
        name = html.escape(r["id"]) + (" <b>(chosen)</b>" if r["id"] == chosen else "")
        cells = [name, r["kind"], f"{r['params'] / 1e6:.3f}", f"{r['gflops']:.2f}",
                 _fmt(r["compression"], ".2f") + ("x" if r["compression"] else ""),
                 f"{r['median_ms']:.1f} [{r['p10_ms']:.1f}, {r['p90_ms']:.1f}]", f"{r['speed_up']:.2f}x",
                 "yes" if r["feasible"] else "no", "yes" if r["front"] else "", _fmt(r["val_mAP50"]), _fmt(r["val_AP"])]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _rungs_html(result: ShrinkResult) -> str:
    """One row per candidate per rung: its validation score there and whether it went on."""
    head = ("rung", "steps", "candidate", "val mAP@0.5", "val AP", "outcome")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    last = len(result.rungs) - 1
    for r in result.rungs:
        order = sorted(r["entered"], key=lambda c: r["kept"].index(c) if c in r["kept"] else len(r["entered"]))
        for cid in order:
            score = r["scores"].get(cid, {})
            if cid in r["kept"]:
                outcome = "<b>chosen</b>" if r["index"] == last else f"kept (rank {r['kept'].index(cid) + 1})"
            else:
                outcome = "cut here" if r["index"] < last else "finalist, not chosen"
            cells = [str(r["index"] + 1), str(r["steps"]), html.escape(cid), _fmt(score.get("mAP50")),
                     _fmt(score.get("AP")), outcome]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _noise(result: ShrinkResult) -> str:
    """Whether the speed-up's interval straddles a speed-up target: the verdict is then within timing noise."""
    lo_hi, target = result.final_speed.get("speed_up_ci95"), result.target_value.get("speed_up")
    if lo_hi is None or target is None or not lo_hi[0] < float(target) < lo_hi[1]:
        return ""
    return ", within timing noise: its 95 % CI spans the target"


def headline(result: ShrinkResult) -> str:
    d = result.final["distilled"]
    fs = result.final_speed
    text = (f"{result.chosen}: {result.final_split_role} mAP@0.5 {d['mean'].get('mAP50', 0):.3f}, AP "
            f"{d['mean'].get('AP', 0):.3f} ({d['split']}) "
            f"after {result.final_steps} steps, {fs['speed_up']:.2f}x the teacher's images/s "
            + (f"(95 % CI {fs['speed_up_ci95'][0]:.2f}-{fs['speed_up_ci95'][1]:.2f}x) " if "speed_up_ci95" in fs else "")
            + (f"in {result.timer} ({fs['speed_up_over_teacher_torch_fp32']:.2f}x the teacher in torch fp32) "
               if "speed_up_over_teacher_torch_fp32" in fs else "")
            + f"({'meets' if fs['meets_target'] else 'MISSES'} the target {result.target}{_noise(result)}; trained "
            f"models timed side by side, {fs['images']} images x {fs.get('rounds', 1)}, {result.threads} thread(s))")
    if "baseline" in result.final:
        b = result.final["baseline"]["mean"]
        text += (f"; without the teacher {b.get('mAP50', 0):.3f} / {b.get('AP', 0):.3f}: distillation "
                 f"{d['mean'].get('mAP50', 0) - b.get('mAP50', 0):+.3f} mAP@0.5")
    t = result.teacher["test"]["metrics"]
    return text + f"; teacher {t.get('mAP50', 0):.3f} / {t.get('AP', 0):.3f} on the same {result.final_split_role} split."


def write_report(result: ShrinkResult) -> Path:
    """``candidates.csv``, ``summary.json``, ``shrink.png`` and ``shrink.html`` in the run folder."""
    out = Path(result.out_dir)
    write_csv(result.candidates, out / "candidates.csv")
    figure = pareto_figure(result, out / "shrink.png")
    page = out / "shrink.html"
    result.page = page
    summary = result.as_dict()
    summary["headline"] = headline(result)
    if result.final_split_role != "test":
        summary["note"] = ("the config has no test split: the final runs are scored on validation, the split the "
                           "choice was made on, so their score is optimistic")
    atomic_write_text(json.dumps(summary, indent=1, default=str) + "\n", out / "summary.json")
    n = len(result.candidates)
    feasible = sum(r["feasible"] for r in result.candidates)
    val = result.validation
    rungs = ", then ".join(f"{len(r['entered'])} for {r['steps']} steps" for r in result.rungs)
    if result.final_split_role == "test":
        scored = "scored on the test split once, at the end"
    else:
        scored = ("scored on the validation split, the one the choice was made on (the config has no test split), "
                  "so that score is optimistic")
    about = (f"<code>detdistill shrink</code> generated {n} student candidates for the teacher "
             f"<code>{html.escape(result.teacher['path'])}</code> ({result.teacher['params'] / 1e6:.2f} M parameters): "
             "zoo families that pair with it (anchor by anchor, or through the feature terms for the stride-8 "
             "form where the data has small objects), over backbone width, FPN channels, box-head width and "
             "test-time proposals and detections, and low-rank (Tucker-2 / SVD) compressions of the teacher itself. "
             f"Each was timed against the teacher on this machine ({html.escape(result.timer)}), batch 1, "
             f"{result.threads} thread(s), interleaved image by image; {feasible} met the target "
             f"({html.escape(result.target)}). Successive halving over measured validation accuracy: {rungs} steps "
             f"(seeds {result.seeds}), each rung keeping the better half, scored on {html.escape(val['split'])} "
             f"({val['images']} images{', a seeded hold-out of the training split' if val['holdout'] else ''}). "
             f"The best finalist was trained for {result.final_steps} steps (seeds {result.final_seeds}) and "
             f"{scored}.")
    if result.scored_as != "torch fp32":
        about += (f" Every score on this page is that of the model as it ships ({html.escape(result.scored_as)}): "
                  "each candidate was quantised after its distillation, calibrated on training images, and "
                  "ranked on its quantised validation score; the eager fp32 score is kept in each run's score.json.")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>detdistill shrink</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>detdistill shrink: the best distilled student under a speed target</h1>",
        "<h2>What you are looking at</h2>", f"<p>{about}</p>",
        f"<p class='headline'>{html.escape(headline(result))}</p>",
        "<h2>Speed, size and accuracy</h2>",
        "<p class='note'>Left: every candidate (untrained zoo students, teacher-initialised low-rank ones); the "
        "front holds those that no other candidate beats by being as fast with as many parameters. Right: the "
        "distilled candidates' validation mAP@0.5 and the chosen one's final score, at its trained speed.</p>",
        f"<img src='{html.escape(figure.name)}' alt='speed vs size and accuracy'>",
        "<h2>Successive halving: who was cut where, on what score</h2>",
        "<p class='note'>Every candidate of every rung, distilled with the shared teacher cache and scored on "
        "validation (mean over the seeds); ties go to the smaller candidate.</p>", _rungs_html(result),
        "<h2>Candidates</h2>", _table_html(result.candidates, result.chosen),
        "<h2>Files</h2><p><a href='candidates.csv'>candidates.csv</a>, <a href='summary.json'>summary.json</a>, "
        "<a href='student.pt'>student.pt</a> (the chosen distilled student, a self-describing checkpoint)</p>",
        "<p>Time (s): " + html.escape(", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items())) + "</p>",
        "</body></html>",
    ]
    return atomic_write_text("\n".join(parts), page)
