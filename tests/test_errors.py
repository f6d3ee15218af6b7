"""One error base class: every exception the package defines for bad input derives from DetDistillError."""

import importlib
import inspect
import pkgutil

import detdistill
from detdistill.errors import DetDistillError

def _package_exceptions() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(detdistill.__path__, "detdistill."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("detdistill"):
                found[f"{obj.__module__}.{name}"] = obj
    return found


def test_every_package_error_derives_from_detdistill_error():
    found = _package_exceptions()
    names = {cls.__name__ for cls in found.values()}
    # The walk must see the errors it is about, or an empty walk would pass.
    assert {"PairingError", "WeightsError", "ConfigError", "DatasetError", "TeacherCacheError", "UsageError",
            "NonFiniteLossError"} <= names
    # Private classes (a leading underscore) are internal control flow that never reaches a user.
    strays = sorted(path for path, cls in found.items() if not cls.__name__.startswith("_")
                    and not issubclass(cls, DetDistillError))
    assert strays == []


def test_detdistill_error_is_still_a_value_error_for_old_callers():
    from detdistill.distill.distiller import PairingError

    assert issubclass(PairingError, ValueError) and issubclass(PairingError, DetDistillError)


def test_the_cli_prints_user_errors_in_one_line_and_keeps_a_bugs_traceback(monkeypatch, capsys):
    from detdistill import cli

    def fails_with(exc):
        def command(args):
            raise exc
        return command

    parser = cli.build_parser()
    for exc, code in ((DetDistillError("data.source: x.json: field 'images' missing"), 2),
                      (FileNotFoundError(2, "No such file or directory", "runs/x/last.pt"), 2),
                      (ValueError("an internal invariant broke"), 1), (KeyError("boxes"), 1)):
        args = parser.parse_args(["models"])
        args.func = fails_with(exc)
        monkeypatch.setattr(cli, "parse_command_line", lambda parser, argv, a=args: a)
        assert cli.main(["models"]) == code
        err = capsys.readouterr().err
        if code == 2:
            assert err.count("\n") == 1 and "detdistill models: error:" in err
        else:
            assert "Traceback (most recent call last)" in err and "this is a bug" in err
    assert "PairingError" in {c.__name__ for c in _package_exceptions().values()}
    from detdistill.errors import ConfigError, PairingError

    assert issubclass(ConfigError, DetDistillError) and issubclass(PairingError, DetDistillError)
