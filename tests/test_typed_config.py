"""The typed-config machinery on its own small sections: coercion, aliases, ranges, choices, field docs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import pytest

from detdistill.errors import ConfigError
from detdistill.typed_config import (Alias, Allowed, Annotated, apply_mapping, at_least, check_ranges, describe_fields,
                                     in_range, parse_overrides, positive, probability)


@dataclass
class Inner:
    rate: Annotated[float, probability()] = 0.5
    """A share."""


@dataclass
class Base:
    on: bool | None = None
    """Switch (inherited doc)."""


@dataclass
class Section(Base):
    steps: Annotated[int, at_least(1)] = 3
    """Steps."""
    scale: Annotated[float, positive()] = 1.0
    mode: Literal["a", "b"] = "a"
    maybe: Literal["x", "y"] | None = None
    seed: Annotated[int, at_least(0, below=2**32)] = 0
    pair: Annotated[list[float] | None, Allowed(lambda v: v is None or len(v) == 2, "null or two numbers")] = None
    inner: Inner = field(default_factory=Inner)

    @property
    def old_steps(self) -> int:
        return self.steps * 10

    @old_steps.setter
    def old_steps(self, value: int) -> None:
        self.steps = value // 10


Section.__config_aliases__ = {"old_steps": Alias(int, "{prefix}steps = old_steps / 10")}


def test_values_are_coerced_from_yaml_strings_and_nested_sections():
    cfg = Section()
    apply_mapping(cfg, parse_overrides(["scale=1e-3", "inner.rate=0.25", "maybe=None", "mode=b"]), "cli")
    assert (cfg.scale, cfg.inner.rate, cfg.maybe, cfg.mode) == (0.001, 0.25, None, "b")
    with pytest.raises(ConfigError, match=r"cli: 'steps': expected an integer, got 'many'"):
        apply_mapping(Section(), {"steps": "many"}, "cli")
    with pytest.raises(ConfigError, match=r"unknown value 'c'; choose one of a, b"):
        apply_mapping(Section(), {"mode": "c"}, "cli")
    with pytest.raises(ConfigError, match=r"unknown key 'inner.rat'; did you mean 'inner.rate'"):
        apply_mapping(Section(), {"inner": {"rat": 1}}, "cli")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("steps", 0, "'s.steps': value 0 is out of range; expected an integer >= 1"),
    ("scale", -2.0, "'s.scale': value -2.0 is out of range; expected a finite number > 0"),
    ("scale", float("nan"), "'s.scale': value nan is out of range"),
    ("scale", float("inf"), "'s.scale': value inf is out of range"),
    ("seed", 2**70, r"'s.seed': value 1180591620717411303424 is out of range; expected an integer >= 0 and < 4294967296"),
    ("pair", [1.0], r"'s.pair': value \[1.0\] is out of range; expected null or two numbers"),
    ("mode", "c", "'s.mode': unknown value 'c'; choose one of a, b"),
    ("maybe", "z", "'s.maybe': unknown value 'z'; choose one of x, y, None"),
])
def test_check_ranges_names_the_key_the_value_and_the_range(key, value, message):
    cfg = Section()
    setattr(cfg, key, value)
    with pytest.raises(ConfigError, match=message):
        check_ranges(cfg, "s.")


def test_nested_ranges_and_bounds_at_the_edges():
    cfg = Section()
    cfg.inner.rate = 1.0
    cfg.seed = 2**32 - 1
    check_ranges(cfg)  # both edges are inside
    cfg.inner.rate = 1.01
    with pytest.raises(ConfigError, match=r"'inner.rate': value 1.01 is out of range; expected a number in \[0, 1\]"):
        check_ranges(cfg)
    assert in_range(0.0, 1.0, high_open=True)(0.999) and not in_range(0.0, 1.0, high_open=True)(1.0)
    assert not at_least(1)(True)  # a bool is not a count


def test_an_old_key_loads_through_its_alias_with_a_note(caplog):
    cfg = Section()
    with caplog.at_level(logging.WARNING, logger="detdistill.config"):
        apply_mapping(cfg, {"old_steps": 70}, "file.yaml", prefix="s.")
    assert cfg.steps == 7
    assert "file.yaml: 's.old_steps' is an old name; it still loads, as s.steps = old_steps / 10" in caplog.text
    assert "old_steps" not in [k for k, _, _ in describe_fields(Section)]


def test_field_docs_come_from_the_declaration_and_the_base_class():
    docs = {k: d for k, _, d in describe_fields(Section)}
    assert docs["on"] == "Switch (inherited doc)." and docs["steps"] == "Steps." and docs["inner.rate"] == "A share."
    assert docs["scale"] == ""


def test_a_rule_inside_an_optional_is_applied_to_values_not_to_none():
    @dataclass
    class Opt:
        score: Annotated[float, probability()] | None = None

    cfg = Opt()
    check_ranges(cfg)
    cfg.score = 1.5
    with pytest.raises(ConfigError, match=r"'score': value 1.5 is out of range"):
        check_ranges(cfg)
