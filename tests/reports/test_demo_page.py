"""The demo's table, gap sentence, headline, CSV and page, from rows addressed by name."""

import csv

import pytest

from detdistill.reports.demo_page import (format_table, gap_closed, gap_sentence, headline, write_csv,
                                          write_page)


def _row(name, mAP50, AP, ips, steps=100):
    return {"name": name, "mAP50": mAP50, "AP": AP, "images_per_s": ips, "speed_up": ips / 20.0, "steps": steps,
            "recipe": f"{name} recipe", "params": 2_000_000 if name == "teacher" else 400_000, "gflops": 0.5}


ROWS = {"distilled": _row("distilled", 0.7, 0.45, 80.0), "teacher": _row("teacher", 0.8, 0.5, 20.0),
        "baseline": _row("baseline", 0.6, 0.4, 81.0)}


def test_gap_closed_definition():
    assert gap_closed(0.8, 0.6, 0.7) == pytest.approx(0.5)
    assert gap_closed(0.8, 0.6, 0.9) == pytest.approx(1.5)
    assert gap_closed(0.6, 0.6, 0.7) is None and gap_closed(0.5, 0.6, 0.7) is None


def test_table_orders_rows_by_name_and_left_aligns_the_model_names():
    lines = format_table(ROWS).splitlines()
    assert lines[1].startswith("|:---|:---|---:|")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["teacher", "baseline", "distilled"]
    cells = [c.strip() for c in lines[4].strip("|").split("|")]
    assert cells == ["distilled", "distilled recipe", "100", "0.700", "—", "0.450", "0.40 M", "80.0", "4.00x"]
    spread = {"seeds": 3, "std": {"baseline": 0.021, "distilled": 0.0304}}
    with_spread = format_table(ROWS, spread).splitlines()
    assert "(std, 3 seeds)" in with_spread[0]
    assert "±0.030" in with_spread[4] and "±0.021" in with_spread[3] and "—" in with_spread[2]


def test_gap_sentence_says_the_numbers_in_words():
    text = gap_sentence(ROWS)
    assert "0.800" in text and "0.600" in text and "a gap of 0.200" in text and "+0.100" in text
    assert "closed 50 % of the gap" in text and "100 steps" in text
    level = {**ROWS, "baseline": _row("baseline", 0.85, 0.5, 81.0)}
    assert "no gap for distillation to close" in gap_sentence(level)


def test_headline_is_speed_ratio_and_share_of_the_teachers_map():
    rows = {**ROWS, "distilled": _row("distilled", 0.72, 0.45, 80.0)}
    assert headline(rows) == "student/teacher images/s = 4.00x at 90 % of the teacher's mAP@0.5"


def test_csv_and_page(tmp_path):
    write_csv(ROWS, tmp_path / "table.csv")
    with open(tmp_path / "table.csv") as fh:
        read = list(csv.DictReader(fh))
    assert [r["name"] for r in read] == ["teacher", "baseline", "distilled"]
    assert float(read[2]["mAP50"]) == pytest.approx(0.7) and read[2]["steps"] == "100"
    png = tmp_path / "figs" / "curve.png"
    png.parent.mkdir()
    png.write_bytes(b"png")
    recipe = {"teacher": "cpu_base", "student": "cpu_small", "num_test": 40, "num_val": 30, "batch_size": 4,
              "lr": 0.02, "eval_every": 20, "jobs": 2,
              "steps_per_model": {"teacher": 100, "baseline": 100, "distilled": 100}}
    summary = {"rows": ROWS, "recipe": recipe, "threads": 1, "seed": 0, "table": format_table(ROWS),
               "seconds": {"total": 12.0}, "distill": {"recipe": "default"},
               "seed_spread": {"seeds": 3, "std": {"baseline": 0.02, "distilled": 0.03}, "diff_mean": 0.01,
                               "ci": [-0.02, 0.04], "source": "detdistill demo --seeds 3"}}
    page = write_page(tmp_path, summary, {"Curves": (png, "what to look for")}).read_text()
    assert "What you are looking at" in page and "src='figs/curve.png'" in page and "what to look for" in page
    assert "td:nth-child(-n+2)" in page and "text-align:left" in page
    assert "teacher 100 steps, baseline 100 steps, distilled 100 steps" in page
    assert "±0.030" in page and "95 % CI [-0.020, +0.040]" in page
    assert page.index("<td>teacher</td>") < page.index("<td>baseline</td>") < page.index("<td>distilled</td>")


def test_page_without_a_multi_seed_result_states_the_recorded_spread(tmp_path):
    recipe = {"teacher": "t", "student": "s", "num_test": 1, "num_val": 1, "batch_size": 1, "lr": 0.1,
              "eval_every": 1, "jobs": 1, "steps_per_model": {"teacher": 1, "baseline": 1, "distilled": 1}}
    summary = {"rows": ROWS, "recipe": recipe, "threads": 1, "seed": 2, "table": format_table(ROWS),
               "seconds": {}, "seed_spread": None, "spread_note": "Seeds spread it by ±0.035."}
    page = write_page(tmp_path, summary, {}).read_text()
    assert "This page is one seed (seed 2). Seeds spread it by ±0.035." in page
