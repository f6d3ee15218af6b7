"""``detdistill shrink``: the command parses, and a bad target is one line and exit status 2, before any work."""

from __future__ import annotations

from detdistill.cli import main


def test_bad_target_is_one_line_before_anything_runs(teacher_path, tmp_path, capsys) -> None:  # noqa: ANN001
    code = main(["shrink", "--teacher", str(teacher_path), "--target-speedup", "0", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--target-speedup must be a positive number" in err
    assert not (tmp_path / "s").exists()


def test_missing_teacher_names_the_file(tmp_path, capsys) -> None:  # noqa: ANN001
    code = main(["shrink", "--teacher", str(tmp_path / "none.pt"), "--target-ms", "40", "--out", str(tmp_path / "s")])
    assert code == 2 and "none.pt is not a file" in capsys.readouterr().err
