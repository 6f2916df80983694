"""Declared, validated magnitudes of augmentation policies.

Each policy declares its knobs as `Param`s: a default (possibly scaled with the image size, so
that pixel magnitudes tuned on 28 px images mean the same at 64/128/224 px), a valid range and
a one-line help. `resolve()` checks user values against them, so a typo or an out-of-range value
fails before training starts, with the valid names and ranges in the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medmnist_lab.errors import MedMNISTLabError

REFERENCE_SIZE = 28  # defaults of pixel magnitudes are tuned on 28 px and scaled from there


def scaled(px_at_28: float) -> Callable[[int], int]:
    """A pixel default that scales with the image size (2 px at 28 -> 5 px at 64, 16 px at 224)."""
    return lambda size: max(1, round(px_at_28 * size / REFERENCE_SIZE))


def half_size(size: int) -> float:
    return size / 2


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # a value, or a function of the image size
    help: str
    lo: float | None = None
    hi: float | Callable[[int], float] | None = None
    kind: str = "float"  # float | int | fill | choice
    choices: tuple[str, ...] = ()

    def default_for(self, size: int, channels: int) -> Any:
        value = self.default(size) if callable(self.default) else self.default
        return self.check(value, size, channels, "")

    def bounds(self, size: int) -> tuple[float | None, float | None]:
        return self.lo, (self.hi(size) if callable(self.hi) else self.hi)

    def describe_range(self, size: int) -> str:
        if self.kind == "choice":
            return "one of " + "|".join(self.choices)
        if self.kind == "fill":
            return "0..255, one value or one per channel"
        lo, hi = self.bounds(size)
        return f"[{_fmt(lo)}, {_fmt(hi)}]"

    def check(self, value: Any, size: int, channels: int, policy: str) -> Any:
        where = f" of policy '{policy}'" if policy else ""
        if self.kind == "choice":
            text = str(value).lower()
            if text not in self.choices:
                raise MedMNISTLabError(
                    f"{self.name}={value!r}{where} is not valid; choose one of: {', '.join(self.choices)}"
                )
            return text
        if self.kind == "fill":
            return _check_fill(value, channels, self.name, where)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise MedMNISTLabError(f"{self.name}={value!r}{where} is not a number") from None
        if self.kind == "int":
            if number != int(number):
                raise MedMNISTLabError(f"{self.name}={value!r}{where} must be an integer")
            number = int(number)
        lo, hi = self.bounds(size)
        if not math.isfinite(number):
            raise MedMNISTLabError(
                f"{self.name}={value!r}{where} is not a finite number; valid: {self.describe_range(size)} at {size} px"
            )
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise MedMNISTLabError(
                f"{self.name}={value!r}{where} is out of range; valid: {self.describe_range(size)} "
                f"at {size} px ({self.help})"
            )
        return number


def _fmt(v: float | None) -> str:
    if v is None:
        return "inf"
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _check_fill(value: Any, channels: int, name: str, where: str) -> list[float]:
    """A fill colour as one value per channel: a scalar is broadcast, a 3-tuple on a grayscale
    image is an error rather than a silent crash or mis-fill (the seed's Pillow failure)."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise MedMNISTLabError(f"{name}={value!r}{where} must be numbers in 0..255") from None
    if len(numbers) == 1:
        numbers = numbers * channels
    if len(numbers) != channels:
        raise MedMNISTLabError(
            f"{name}={value!r}{where} has {len(numbers)} values; the images have {channels} "
            f"channel(s): give one value, or {channels}"
        )
    if any(not 0 <= v <= 255 for v in numbers):  # also false for NaN
        raise MedMNISTLabError(f"{name}={value!r}{where} is out of range; valid: 0..255 per channel")
    return numbers


def resolve(
    params: Sequence[tuple[str, Param]], given: dict[str, Any], size: int, channels: int, spec: str
) -> dict[str, Any]:
    """Defaults overridden by `given`; every name in `given` must belong to one of `params`
    (pairs of owning policy and Param)."""
    known = {p.name: (owner, p) for owner, p in params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(sorted(known)) or "(none: this spec takes no magnitudes)"
        raise MedMNISTLabError(f"unknown magnitude(s) {', '.join(unknown)} for augment '{spec}'; valid: {valid}")
    out: dict[str, Any] = {}
    for name, (owner, p) in known.items():
        out[name] = p.check(given[name], size, channels, owner) if name in given else p.default_for(size, channels)
    return out


def parse_magnitudes(items: Iterable[str]) -> dict[str, Any]:
    """`["rotate=30", "fill=0,0,0", "interpolation=nearest"]` -> {"rotate": 30, ...} (CLI --set)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise MedMNISTLabError(f"magnitude '{item}' must look like NAME=VALUE, e.g. rotate=30")
        out[key.strip()] = _parse_value(text.strip())
    return out


def _parse_value(text: str) -> Any:
    if "," in text:
        return [_parse_value(t.strip()) for t in text.split(",")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
