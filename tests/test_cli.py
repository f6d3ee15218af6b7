"""The command line's own parsing: overrides on either side of the options, and what is still refused."""

import pytest

from detdistill.cli import build_parser, parse_command_line


def test_overrides_may_come_before_and_after_options():
    args = parse_command_line(build_parser(), ["distill", "train.max_steps=10", "--teacher", "t.pt", "optim.lr=0.1"])
    assert args.overrides == ["train.max_steps=10", "optim.lr=0.1"] and args.teacher == "t.pt"


@pytest.mark.parametrize("argv", [["distill", "a=1", "--teacher", "t.pt", "stray"],
                                  ["distill", "a=1", "--teacher", "t.pt", "--no-such-flag"]])
def test_a_word_that_is_no_override_is_still_an_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_command_line(build_parser(), argv)
    assert exit_.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
