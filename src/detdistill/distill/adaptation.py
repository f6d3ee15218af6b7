"""Adaptation layers: map a student's guided feature to the shape of the teacher's hint (Romero et al.; the paper's §3).

A 1×1 convolution for conv features (cheap, and the paper finds it helps even when channel counts already
match), a linear layer for fully connected features. Adaptation layers train with the student and are
discarded after training (they are never part of the exported student).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError, PairingError


ADAPTER_INITS = ("kaiming", "zero")


def make_adaptation(student_channels: int, teacher_channels: int, kind: str = "conv", enabled: bool = True,
                    init: str = "zero") -> nn.Module:
    """``nn.Conv2d(C_s, C_t, 1)`` (``kind="conv"``) or ``nn.Linear(C_s, C_t)`` (``kind="linear"``).

    With ``enabled=False`` the student feature is compared directly, which needs ``C_s == C_t``.

    ``init="zero"`` starts the adapter at zero: its first gradients fit the adapter to the teacher's hint
    while the student's features get none, so the student is not pulled toward a random projection of
    the teacher's features before the adapter has learnt a useful one. ``"kaiming"`` is the usual random
    initialisation.
    """
    if init not in ADAPTER_INITS:
        raise ConfigError(f"distill.adapter_init: unknown value {init!r}; choose one of {list(ADAPTER_INITS)}")
    if not enabled:
        if student_channels != teacher_channels:
            raise PairingError(
                f"distill.adaptation: off, but the guided layer has {student_channels} channels and the hint layer "
                f"{teacher_channels}; only an adaptation layer can match them (set distill.adaptation=true)")
        return nn.Identity()
    if kind == "conv":
        layer = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
    elif kind == "linear":
        layer = nn.Linear(student_channels, teacher_channels)
    else:
        raise ConfigError(f"adaptation kind: unknown value {kind!r}; choose 'conv' or 'linear'")
    if init == "zero":
        nn.init.zeros_(layer.weight)
    else:
        nn.init.kaiming_uniform_(layer.weight, a=1)
    nn.init.zeros_(layer.bias)
    return layer
