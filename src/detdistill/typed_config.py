"""Typed configuration machinery: dataclass sections filled from mappings and ``key=value`` overrides.

Nothing here knows a detdistill section; :mod:`detdistill.config` (the experiment schema) and
:mod:`detdistill.distill.config` (the distillation section) declare fields with it. A field is declared as a
dataclass field with its documentation in the string literal after it (read by :func:`describe_fields` for
``--help``, errors and the docs) and, where a number has a range, an :class:`Allowed` in ``Annotated``::

    @dataclass
    class Section:
        weight: Annotated[float, at_least(0.0)] = 1.0
        \"\"\"What it weighs.\"\"\"

Ranges are checked in one place, :func:`check_ranges`, which names the dotted key and the allowed range.
Old key names keep loading through a section's ``__config_aliases__`` (``{old: Alias(...)}``), with a note.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     steps: Annotated[int, at_least(1)] = 5
    >>> cfg = Demo()
    >>> apply_mapping(cfg, parse_overrides(["steps=0"]), "command line")
    >>> check_ranges(cfg, "demo.")
    Traceback (most recent call last):
    ...
    detdistill.errors.ConfigError: 'demo.steps': value 0 is out of range; expected an integer >= 1
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import logging
import math
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

import yaml

from .errors import ConfigError

__all__ = ["Alias", "Allowed", "Annotated", "ConfigError", "all_keys", "apply_mapping", "at_least", "check_ranges",
           "describe_fields", "finite", "in_range", "parse_overrides", "positive", "probability"]

_log = logging.getLogger("detdistill.config")


# ---------------------------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Allowed:
    """A range (or any rule) a field's value must satisfy; ``text`` is what the error says is allowed."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError, OverflowError):
            return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def finite() -> Allowed:
    return Allowed(_is_number, "a finite number")


def positive() -> Allowed:
    return Allowed(lambda v: _is_number(v) and v > 0, "a finite number > 0")


def probability() -> Allowed:
    return Allowed(lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a number in [0, 1]")


def at_least(low: float, *, integer: bool | None = None, below: float | None = None, optional: bool = False,
             text: str | None = None) -> Allowed:
    """``>= low`` (and ``< below``); integers when ``low`` is an int unless ``integer=False``; None allowed
    when ``optional``."""
    whole = isinstance(low, int) if integer is None else integer

    def test(v: Any) -> bool:
        if v is None:
            return optional
        ok = isinstance(v, int) and not isinstance(v, bool) if whole else _is_number(v)
        return ok and v >= low and (below is None or v < below)

    kind = "an integer" if whole else "a finite number"
    default = f"{kind} >= {low}" + (f" and < {below}" if below is not None else "") + (" or null" if optional else "")
    return Allowed(test, text or default)


def in_range(low: float, high: float, *, high_open: bool = False, optional: bool = False,
             text: str | None = None) -> Allowed:
    """``low <= value <= high`` (``< high`` when ``high_open``); None allowed when ``optional``."""
    close = ")" if high_open else "]"
    return Allowed(lambda v: (optional and v is None) or (
        _is_number(v) and low <= v and (v < high if high_open else v <= high)),
                   text or f"a number in [{low}, {high}{close}" + (" or null" if optional else ""))


def _allowed_of(annotation: Any, value: Any = None) -> list[Allowed]:
    """The rules on a field: ``Annotated[T, rule]``, or inside ``Annotated[T, rule] | None`` (None passes)."""
    if typing.get_origin(annotation) is Annotated:
        return [m for m in annotation.__metadata__ if isinstance(m, Allowed)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return []
        return [rule for arg in typing.get_args(annotation) for rule in _allowed_of(arg, value)]
    return []


def _choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) field, else None."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        literals = [a for a in typing.get_args(annotation) if typing.get_origin(a) is Literal]
        if len(literals) == 1 and all(a is type(None) or a in literals for a in typing.get_args(annotation)):
            return (*typing.get_args(literals[0]), None)
    return None


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Every ``Allowed`` and ``Literal`` declared on ``obj``'s fields (nested sections included); the first
    failure is a :class:`ConfigError` naming the dotted key, the value and the allowed range or choices."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key + ".")
            continue
        choices = _choices_of(hints[f.name])
        if choices is not None and value not in choices:
            # coerce() checks loaded values; this catches a section built in Python with a wrong choice.
            raise ConfigError(f"'{key}': unknown value {value!r}; choose one of {', '.join(map(str, choices))}")
        for allowed in _allowed_of(hints[f.name], value):
            if not allowed(value):
                raise ConfigError(f"'{key}': value {value!r} is out of range; expected {allowed.text}")


# ---------------------------------------------------------------------------------------------- aliases
@dataclass(frozen=True)
class Alias:
    """An old key of a section that still loads: ``annotation`` types its value, ``replacement`` is what the
    note tells people to write instead; the section's attribute of that name (a property) does the mapping."""

    annotation: Any
    replacement: str


def _aliases(cls: type) -> dict[str, Alias]:
    return dict(getattr(cls, "__config_aliases__", {}))


# ---------------------------------------------------------------------------------------------- fields
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field), for ``--help`` and errors; a subclass's
    field inherits its base's docstring unless it states its own."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def _section_type(annotation: Any) -> type | None:
    return annotation if dataclasses.is_dataclass(annotation) and isinstance(annotation, type) else None


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(dotted key, default, doc)`` for every leaf field, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    docs = _field_docs(cls)
    default = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        section = _section_type(hints[f.name])
        if section is not None:
            rows.extend(describe_fields(section, key + "."))
        else:
            rows.append((key, getattr(default, f.name), docs.get(f.name, "")))
    return rows


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key and every section key of ``cls`` (for "did you mean")."""
    hints = typing.get_type_hints(cls)
    return [k for k, _, _ in describe_fields(cls, prefix)] + [
        f"{prefix}{f.name}" for f in dataclasses.fields(cls) if _section_type(hints[f.name]) is not None]


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as ``annotation`` says (YAML's loose scalars included), or a ConfigError naming ``where``."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        # YAML reads `null`/`~` as None; people also write Python's `None` (or `none`) and mean the same.
        if type(None) in args and (value is None or (isinstance(value, str) and value in ("None", "none"))):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if annotation is Any:
        return value
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        choices = [str(a) for a in args]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{where}: unknown value {value!r}; {hint}choose one of {', '.join(choices)}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; people mean a number
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `hint_levels: [0, 1]` means FPN keys '0', '1'
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def apply_mapping(obj: Any, data: dict[str, Any], where: str, prefix: str = "") -> None:
    """Set ``obj``'s fields (recursively) from ``data``; unknown keys suggest the closest valid one."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    aliases = _aliases(type(obj))
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key in aliases and key not in names:
            alias = aliases[key]
            setattr(obj, key, coerce(value, alias.annotation, f"{where}: '{dotted}'"))
            _log.warning("note: %s: '%s' is an old name; it still loads, as %s", where, dotted,
                         alias.replacement.format(prefix=prefix))
            continue
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{dotted}'{_suggest(dotted, all_keys(type(obj), prefix))}")
        annotation = hints[key]
        if _section_type(annotation) is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{dotted}' must be a mapping, got {value!r}")
            apply_mapping(getattr(obj, key), value, where, dotted + ".")
        else:
            setattr(obj, key, coerce(value, annotation, f"{where}: '{dotted}'"))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=0.1", "model.overrides={min_size: 448}"]`` → nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': cannot parse value ({exc})") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return nested
