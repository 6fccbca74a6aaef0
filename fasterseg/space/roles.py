"""Roles of the collaborative search and the width-sampling modes."""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    """Teacher (full width, no latency term) or student (sampled widths, latency term)."""

    TEACHER = "teacher"
    STUDENT = "student"


class WidthMode(str, Enum):
    """How a forward pass picks each layer's output width.

    ``max``/``min``: the largest/smallest choice; ``random``: uniform per layer;
    ``sampled``: hard Gumbel-softmax on the role's width logits, straight-through (student);
    ``argmax``: the most likely width per layer, the one decoding picks (for evaluation).
    """

    MAX = "max"
    MIN = "min"
    RANDOM = "random"
    SAMPLED = "sampled"
    ARGMAX = "argmax"
