"""The quick demo end to end: three models trained, the report written, the printed table equal to the CSV."""

import csv
import re
from pathlib import Path

import pytest

from detdistill.demo import QUICK, format_table, gap_closed, run_demo, train_or_reuse_teacher


def test_gap_closed_definition():
    assert gap_closed(0.8, 0.6, 0.7) == pytest.approx(0.5)
    assert gap_closed(0.8, 0.6, 0.9) == pytest.approx(1.5)
    assert gap_closed(0.6, 0.6, 0.7) is None and gap_closed(0.5, 0.6, 0.7) is None


@pytest.mark.slow
def test_quick_demo_writes_the_report_and_prints_the_csv_numbers(tmp_path, capsys):
    printed: list[str] = []
    summary = run_demo(tmp_path / "demo", quick=True, seed=0, log=printed.append)
    out = tmp_path / "demo"
    for name in ("index.html", "table.md", "table.csv", "summary.json", "speed_accuracy.png", "predictions.png",
                 "soft_labels.png", "loss_curves_teacher.png", "loss_curves_baseline.png",
                 "loss_curves_distilled.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    html = (out / "index.html").read_text()
    assert all(img in html for img in ("speed_accuracy.png", "predictions.png", "soft_labels.png"))

    with open(out / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["teacher", "baseline", "distilled"]
    table = next(t for t in printed if t.startswith("| model"))
    for r in rows:
        line = next(x for x in table.splitlines() if x.startswith(f"| {r['name']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{float(r['mAP50']):.3f}" and cells[2] == f"{float(r['AP']):.3f}"
        assert cells[3] == f"{int(r['params']) / 1e6:.2f} M" and cells[5] == f"{float(r['images_per_s']):.1f}"
    assert table == format_table_from(summary)
    # The teacher passed its mAP floor honestly (the distill run checks it and refuses a weak teacher).
    teacher_line = next(x for x in printed if x.startswith("teacher mAP@0.5 on"))
    assert float(re.search(r": ([0-9.]+) \(floor", teacher_line).group(1)) >= QUICK.teacher_min_map
    params = {r["name"]: int(r["params"]) for r in rows}
    assert params["teacher"] > 5 * params["baseline"] and params["baseline"] == params["distilled"]

    # A second run reuses the cached teacher (same config) instead of training it again.
    printed.clear()
    path = train_or_reuse_teacher(QUICK, out / "cache", 0, printed.append)
    assert printed[0].startswith("teacher: reusing") and path.is_file()


def format_table_from(summary: dict) -> str:
    from detdistill.demo import DemoRow

    rows = [DemoRow(**r) for r in summary["rows"]]
    return format_table(rows, summary["gap_closed"], summary["teacher_margin"])


def test_teacher_cache_key_ignores_distillation_knobs_but_not_training_ones():
    from detdistill.demo import _config_key, _experiment

    base = _experiment(QUICK, QUICK.teacher, QUICK.teacher_steps, Path("a"), 0)
    other_folder = _experiment(QUICK, QUICK.teacher, QUICK.teacher_steps, Path("b"), 0)
    other_folder.distill.gamma = 2.0
    other_folder.distill.adapter_init = "kaiming"
    assert _config_key(other_folder) == _config_key(base)
    longer = _experiment(QUICK, QUICK.teacher, QUICK.teacher_steps + 1, Path("a"), 0)
    assert _config_key(longer) != _config_key(base)
