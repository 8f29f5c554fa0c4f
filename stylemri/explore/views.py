"""The images the page shows, one registered view per kind: generate, walk, interpolate, mix, projection.

A view turns checked query parameters into an image (and, for the edits, the image it started from, so a
difference map can be drawn). The app gives every view the same endpoint shape
`GET /api/<view>?...&format=png|png16|nifti[&diff=1]`, and `/api/nearest?view=<view>&...` looks up the
nearest training image of exactly that image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from stylemri.data.covariates import parse_setting
from stylemri.errors import UserError
from stylemri.explore.service import ModelService


class ApiError(UserError):
    """A bad request: one line for the client and the HTTP status to send it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(" ".join(str(message).split()))
        self.status = status


SEED_LIMIT = 2**32
MAX_ABS_PSI = 4.0
MAX_ABS_T = 10.0


class Query:
    """Typed, checked access to query parameters; every error names the parameter and what was expected."""

    def __init__(self, params: Mapping[str, str], service: ModelService) -> None:
        self.params = params
        self.service = service

    def raw(self, name: str) -> str | None:
        value = self.params.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def seed(self, name: str = "seed", default: int | None = None) -> int:
        return self.integer(name, default, 0, SEED_LIMIT - 1, "a seed")

    def number(self, name: str, default: float, lo: float, hi: float, what: str) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(f"{name} {raw!r}: not a number; expected {what} from {lo:g} to {hi:g}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ApiError(f"{name} {raw}: out of range; expected {what} from {lo:g} to {hi:g}")
        return value

    def integer(self, name: str, default: int | None, lo: int, hi: int, what: str) -> int:
        """An integer in [lo, hi]; `default` None: required."""
        raw = self.raw(name)
        if raw is None:
            if default is None:
                raise ApiError(f"{name}: missing; expected {what} from {lo} to {hi}")
            return default
        if not re.fullmatch(r"[+-]?\d{1,20}", raw):
            raise ApiError(f"{name} {raw!r}: not an integer; expected {what} from {lo} to {hi}")
        if not lo <= int(raw) <= hi:
            raise ApiError(f"{name} {raw}: out of range; expected {what} from {lo} to {hi}")
        return int(raw)

    def trunc(self) -> float:
        return self.number("trunc", 1.0, -MAX_ABS_PSI, MAX_ABS_PSI, "a truncation psi (1 = none, 0.7 typical)")

    def t(self, default: float, lo: float = -MAX_ABS_T, hi: float = MAX_ABS_T) -> float:
        return self.number("t", default, lo, hi, "a position t")

    def class_index(self, name: str = "class", default: int | None = None) -> int | None:
        """A class name (or index) of a conditional model; absent for an unconditional one."""
        raw = self.raw(name)
        names = self.service.class_names
        if not names:
            if raw is not None:
                raise ApiError(f"{name} {raw!r}: this model is unconditional (trained without classes); omit {name}")
            return None
        if raw is None:
            if default is not None:
                return default
            raise ApiError(f"{name}: missing; this model's classes are {', '.join(names)}")
        if raw in names:
            return names.index(raw)
        if raw.isdigit() and int(raw) < len(names):
            return int(raw)
        raise ApiError(f"{name} {raw!r}: unknown class; this model's classes are {', '.join(names)}")

    def setting(self) -> dict[str, str] | None:
        """`set=age=80,sex=F`: a covariate model's setting (required there, refused elsewhere), parsed and
        checked by the validator of `generate --set`, so a value outside the training range is refused in
        the same words, naming the range."""
        raw = self.raw("set")
        setting = None if raw is None else parse_setting(raw, flag="set")
        self.service.check_setting(setting)
        return setting

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw not in options:
            raise ApiError(f"{name} {raw!r}: expected one of {', '.join(options)}")
        return raw


@dataclass(frozen=True)
class Rendered:
    image: torch.Tensor  # (C, R, R) in [-1, 1]
    reference: torch.Tensor | None = None  # what the image started from, for the difference map


@dataclass(frozen=True)
class View:
    name: str
    params: tuple[str, ...]
    summary: str
    render: Callable[[ModelService, Query], Rendered]


VIEWS: dict[str, View] = {}


def register_view(name: str, params: tuple[str, ...], summary: str) -> Callable:
    def wrap(fn: Callable[[ModelService, Query], Rendered]) -> Callable[[ModelService, Query], Rendered]:
        VIEWS[name] = View(name, params, summary, fn)
        return fn

    return wrap


@register_view("generate", ("seed", "class", "trunc", "set"),
               "One generated slice: the same pixels as `stylemri generate RUN --seeds S --class C --trunc T "
               "[--set age=80,sex=F]` (set: the covariates of a --condition model).")
def _generate(svc: ModelService, q: Query) -> Rendered:
    setting = q.setting()
    return Rendered(svc.generate(q.seed(), q.class_index(), q.trunc(), setting))


def _two_classes(svc: ModelService, q: Query) -> tuple[int, int]:
    if svc.covariates is not None:
        raise ApiError(f"from/to: class directions are not available for a covariate model (the class means would "
                       f"need covariates); move the covariate sliders ({', '.join(svc.covariates.names)}) instead")
    if not svc.class_names:
        raise ApiError("from/to: this model is unconditional; class directions need a conditional model")
    if len(svc.class_names) < 2:
        raise ApiError("from/to: this model has one class; class directions need two")
    a = q.class_index("from", default=0)
    b = q.class_index("to", default=1 if a == 0 else 0)
    if a == b:
        raise ApiError(f"from/to {svc.class_names[a]}: expected two different classes")
    return int(a), int(b)  # type: ignore[arg-type]


@register_view("walk", ("seed", "from", "to", "t", "trunc"),
               "The class direction: the seed's slice of class `from` (the class mean when seed is omitted) "
               "moved t times mean w(to) - mean w(from); t = 0 is the start, t = 1 one class-mean difference.")
def _walk(svc: ModelService, q: Query) -> Rendered:
    a, b = _two_classes(svc, q)
    seed = None if q.raw("seed") is None else q.seed()
    image, start = svc.walk(seed, a, b, q.t(1.0), q.trunc())
    return Rendered(image, start)


@register_view("interpolate", ("seed", "class", "seed2", "class2", "t", "space", "trunc", "set"),
               "Between (seed, class) at t = 0 and (seed2, class2) at t = 1: lerp in W (default) or slerp in Z; "
               "both ends at the covariates `set` of a --condition model.")
def _interpolate(svc: ModelService, q: Query) -> Rendered:
    setting = q.setting()
    ka = q.class_index()
    kb = q.class_index("class2", default=ka)
    seed = q.seed()
    image = svc.interpolate(seed, ka, q.seed("seed2", default=seed), kb, q.t(0.5, 0.0, 1.0),
                            q.choice("space", ("w", "z"), "w"), q.trunc(), setting)
    return Rendered(image)


@register_view("mix", ("seed", "seed2", "class", "styles", "trunc", "set"),
               "Style mixing: the seed's slice with the `styles` layers (coarse, middle, fine or indices) of seed2, "
               "both at the covariates `set` of a --condition model.")
def _mix(svc: ModelService, q: Query) -> Rendered:
    setting = q.setting()
    raw = q.raw("styles") or "coarse"
    layers = svc.style_layers(raw)
    return Rendered(svc.mix(q.seed(), q.seed("seed2"), q.class_index(), layers, q.trunc(), setting))


@register_view("projection", ("id", "show", "from", "to", "t"),
               "A projected upload (POST /api/project): show=reconstruction (edited by t along from -> to) or "
               "show=target (the upload as prepared for the model).")
def _projection(svc: ModelService, q: Query) -> Rendered:
    pid = q.raw("id")
    if pid is None or not re.fullmatch(r"[0-9a-f]{16}", pid):
        raise ApiError(f"id {pid!r}: expected the 16-hex-digit id returned by POST /api/project")
    try:
        record = svc.projection(pid)
    except KeyError:
        raise ApiError(f"id {pid}: unknown projection (the server keeps the last few; project again)", 404) from None
    if q.choice("show", ("reconstruction", "target"), "reconstruction") == "target":
        return Rendered(record.target)
    wants_edit = any(q.raw(k) is not None for k in ("from", "to", "t"))
    a, b = _two_classes(svc, q) if wants_edit else (None, None)
    image, start = svc.render_projection(record, a, b, q.t(0.0) if wants_edit else 0.0)
    return Rendered(image, start)


__all__ = ["ApiError", "Query", "Rendered", "View", "VIEWS", "register_view", "SEED_LIMIT"]
