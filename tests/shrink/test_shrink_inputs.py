"""Every flag of ``detdistill shrink`` is checked before any work: one line naming the flag and the value,
exit status 2, nothing created (and the library's keywords are refused the same way)."""

from __future__ import annotations

import pytest

from detdistill.cli import main
from detdistill.shrink import ShrinkInputError, search

REFUSED = [
    (["--target-ms", "inf"], "--target-ms inf"),
    (["--target-ms", "nan"], "--target-ms nan"),
    (["--target-speedup", "0"], "--target-speedup 0"),
    (["--target-speedup", "-2"], "--target-speedup -2"),
    (["--target-speedup", "3", "--target-margin", "1"], "--target-margin 1"),
    (["--target-speedup", "3", "--final-steps", "0"], "--final-steps 0"),
    (["--target-speedup", "3", "--final-steps", "-1"], "--final-steps -1"),
    (["--target-speedup", "3", "--seeds", "0"], "--seeds 0"),
    (["--target-speedup", "3", "--final-seeds", "0"], "--final-seeds 0"),
    (["--target-speedup", "3", "--budget-steps", "0"], "--budget-steps 0"),
    (["--target-speedup", "3", "--candidates", "0"], "--candidates 0"),
    (["--target-speedup", "3", "--finalists", "0"], "--finalists 0"),
    (["--target-speedup", "3", "--threads", "0"], "--threads 0"),
    (["--target-speedup", "3", "--timing-images", "0"], "--timing-images 0"),
    (["--target-speedup", "3", "--holdout-fraction", "1"], "--holdout-fraction 1"),
    (["--target-speedup", "3", "--holdout-seed", "-1"], "--holdout-seed -1"),
]


@pytest.mark.parametrize(("flags", "named"), REFUSED, ids=[named for _, named in REFUSED])
def test_a_bad_flag_is_one_line_naming_it_before_any_work(teacher_path, tmp_path, capsys, flags, named) -> None:  # noqa: ANN001
    code = main(["shrink", "--teacher", str(teacher_path), *flags, "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and named in err, err
    assert not (tmp_path / "s").exists()


def test_an_out_that_is_a_file_is_named(teacher_path, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "taken"
    out.write_text("not a folder")
    assert main(["shrink", "--teacher", str(teacher_path), "--target-speedup", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--out {out}: a file, not a folder" in err and "Errno" not in err


def test_a_missing_teacher_names_the_flag_and_the_file(tmp_path, capsys) -> None:  # noqa: ANN001
    code = main(["shrink", "--teacher", str(tmp_path / "none.pt"), "--target-ms", "40", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and f"--teacher {tmp_path / 'none.pt'}: not a file" in err


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"seeds": []}, "--seeds []"), ({"seeds": [0, 0]}, "a seed is repeated"), ({"seeds": 1.5}, "--seeds"),
    ({"final_steps": True}, "--final-steps True"), ({"budget_steps": 2.0}, "--budget-steps 2.0"),
])
def test_the_library_refuses_the_same_way_before_reading_the_config(teacher_path, tmp_path, kwargs, named) -> None:  # noqa: ANN001
    with pytest.raises(ShrinkInputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        search(teacher_path, "no-such-config.yaml", out=tmp_path / "s", target_speedup=3, **kwargs)
    assert not (tmp_path / "s").exists()


def test_the_cli_and_the_library_share_the_default_margin() -> None:
    import inspect

    from detdistill.cli import build_parser
    from detdistill.shrink.front import DEFAULT_TARGET_MARGIN

    args = build_parser().parse_args(["shrink", "--teacher", "t.pt", "--target-speedup", "3", "--out", "s"])
    assert args.target_margin == DEFAULT_TARGET_MARGIN == 0.05
    assert inspect.signature(search).parameters["target_margin"].default == DEFAULT_TARGET_MARGIN
