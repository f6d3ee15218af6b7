"""One error base class: every exception the package defines for bad input derives from DetDistillError."""

import importlib
import inspect
import pkgutil

import detdistill
from detdistill.errors import DetDistillError

# Not bad input: a CLI usage slip (argparse's domain) and a run that diverged (its message says what to lower).
NOT_USER_INPUT = {"UsageError", "NonFiniteLossError"}


def _package_exceptions() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(detdistill.__path__, "detdistill."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("detdistill"):
                found[f"{obj.__module__}.{name}"] = obj
    return found


def test_every_package_error_but_two_derives_from_detdistill_error():
    found = _package_exceptions()
    names = {cls.__name__ for cls in found.values()}
    # The walk must see the errors it is about, or an empty walk would pass.
    assert {"PairingError", "WeightsError", "ConfigError", "DatasetError", "TeacherCacheError"} <= names
    # Private classes (a leading underscore) are internal control flow that never reaches a user.
    strays = sorted(path for path, cls in found.items() if not cls.__name__.startswith("_")
                    and cls.__name__ not in NOT_USER_INPUT and not issubclass(cls, DetDistillError))
    assert strays == []


def test_detdistill_error_is_still_a_value_error_for_old_callers():
    from detdistill.distill.distiller import PairingError

    assert issubclass(PairingError, ValueError) and issubclass(PairingError, DetDistillError)
