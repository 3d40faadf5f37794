"""Reading a search-space file: YAML in, a validated ``SearchSpace`` out (the format is
described in ``nas.search.space``); every error a ``SpaceError`` naming the file, the
dimension and the problem."""

from __future__ import annotations

import importlib.resources
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from nas.config import ConfigError, FusionConfig, TrainConfig
from nas.errors import SpaceError
from nas.search.space import _DATA_FIELDS, Dimension, ProxyBudget, SearchSpace

__all__ = ["load_space", "parse_duration", "parse_space", "resolve_space_path",
           "shipped_spaces"]

_FUSION_FIELDS = set(FusionConfig.field_names())
_TRAIN_FIELDS = set(TrainConfig.field_names())
_DIM_KEYS = {"choices", "type", "low", "high", "log", "step", "when"}
_TOP_KEYS = {"name", "description", "data", "trials", "time_budget", "base", "dimensions",
             "proxy"}
# The shipped spaces are package data (``nas/spaces/*.yaml``), so an installed wheel has
# them; a clone's top-level ``search_spaces/`` holds the same files for users to read.
_SPACES_PACKAGE = "nas.spaces"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """``"20m"`` -> 1200.0 seconds (units s, m, h; a bare number is seconds); a value
    that is not a positive duration raises ValueError saying why."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError("not a duration; give a positive number with a unit s, m or h, "
                         "e.g. 90s, 20m, 1.5h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not seconds > 0:
        raise ValueError("must be more than 0 (e.g. 90s, 20m, 1.5h)")
    return seconds


def shipped_spaces() -> dict[str, Any]:
    """The spaces installed with the package: ``{name: Traversable}``, sorted by name."""
    root = importlib.resources.files(_SPACES_PACKAGE)
    return {f.name[:-5]: f for f in sorted(root.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def resolve_space_path(name_or_path: str) -> Any:
    """A path as given, or a bare name (``quick``) looked up among the shipped spaces.

    Returns a ``Path`` (or an ``importlib.resources`` Traversable for a shipped space).
    """
    p = Path(name_or_path)
    if not _is_bare_name(name_or_path):
        return p
    return shipped_spaces().get(name_or_path, p)


def _is_bare_name(name_or_path: str) -> bool:
    p = Path(name_or_path)
    return not (p.exists() or p.suffix in (".yaml", ".yml") or "/" in name_or_path)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; SpaceError names the file, dimension and problem."""
    p = resolve_space_path(str(path))
    try:
        text = p.read_text()
    except FileNotFoundError:
        shipped = (f", and no shipped space of that name (shipped: "
                   f"{', '.join(shipped_spaces())})" if _is_bare_name(str(path)) else "")
        raise SpaceError(f"{p}: file not found{shipped}") from None
    except OSError as e:
        raise SpaceError(f"{p}: cannot read: {e.strerror}") from None
    return parse_space(text, str(p))


def parse_space(text: str, source: str = "<space>") -> SearchSpace:
    """Validate the YAML text of a space file (see the module docstring)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"{source}: expected a mapping with 'dimensions', got "
                         f"{type(doc).__name__}")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {unknown}; expected "
                         f"{sorted(_TOP_KEYS)}")
    base = doc.get("base") or {}
    if not isinstance(base, dict) or set(base) - {"fusion", "train"}:
        raise SpaceError(f"{source}: 'base' must be a mapping with 'fusion' and/or 'train'")
    base_fusion = dict(base.get("fusion") or {})
    base_train = dict(base.get("train") or {})
    for sec, d in (("fusion", base_fusion), ("train", base_train)):
        if not isinstance(d, dict):
            raise SpaceError(f"{source}: base.{sec} must be a mapping")
    try:
        FusionConfig.from_dict(base_fusion, source=f"{source} [base.fusion]")
        TrainConfig.from_dict(base_train, source=f"{source} [base.train]")
    except ConfigError as e:
        raise SpaceError(str(e)) from None

    dims_doc = doc.get("dimensions")
    if not isinstance(dims_doc, dict) or not dims_doc:
        raise SpaceError(f"{source}: 'dimensions' must be a non-empty mapping of "
                         "field name -> {choices | type/low/high}")
    dims: list[Dimension] = []
    for name, spec in dims_doc.items():
        dims.append(_parse_dimension(source, str(name), spec, {d.name: d for d in dims},
                                     base_fusion, base_train))

    proxy_doc = doc.get("proxy") or {}
    if not isinstance(proxy_doc, dict) or set(proxy_doc) - {"min_budget", "max_budget", "eta"}:
        raise SpaceError(f"{source}: 'proxy' must be a mapping with min_budget, max_budget, "
                         "eta")
    default_epochs = float(base_train.get("epochs", TrainConfig().epochs))
    try:
        proxy = ProxyBudget(float(proxy_doc.get("min_budget", default_epochs / 3)),
                            float(proxy_doc.get("max_budget", default_epochs)),
                            float(proxy_doc.get("eta", 3)))
    except (TypeError, ValueError):
        raise SpaceError(f"{source}: proxy: budgets and eta must be numbers, got "
                         f"{proxy_doc}") from None
    proxy.check(f"{source}: proxy")
    trials = doc.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool)
                               or trials < 1):
        raise SpaceError(f"{source}: 'trials' must be a positive integer, got {trials!r}")
    budget = doc.get("time_budget")
    time_budget_s = None
    if budget is not None:
        try:
            time_budget_s = parse_duration(str(budget))
        except ValueError as e:
            raise SpaceError(f"{source}: 'time_budget' {budget!r}: {e}") from None
    data = doc.get("data")
    if data is not None and not isinstance(data, str):
        raise SpaceError(f"{source}: 'data' must be a string (a data spec), got {data!r}")
    space = SearchSpace(
        name=str(doc.get("name") or Path(source).stem), path=source, text=text,
        description=str(doc.get("description") or ""), base_fusion=base_fusion,
        base_train=base_train, dimensions=tuple(dims), proxy=proxy, data=data, trials=trials,
        time_budget_s=time_budget_s)
    if space.reference() is None:
        raise SpaceError(f"{source}: the reference configuration (defaults restricted to the "
                         "space) is not valid; check the base section")
    return space


def _num(source: str, name: str, key: str, v: Any, kind: str) -> float | int:
    # YAML 1.1 reads `1e-4` (no dot) as a string: accept numeric strings.
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise SpaceError(f"{source}: dimension '{name}': {key} must be a number, "
                             f"got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpaceError(f"{source}: dimension '{name}': {key} must be a finite number, "
                         f"got {v!r}")
    if kind == "int":
        if float(v) != int(v):
            raise SpaceError(f"{source}: dimension '{name}': {key} must be an integer for "
                             f"type int, got {v!r}")
        return int(v)
    return float(v)


def _parse_dimension(source: str, name: str, spec: Any, by_name: Mapping[str, Dimension],
                     base_fusion: dict[str, Any], base_train: dict[str, Any]) -> Dimension:
    """One entry of ``dimensions`` (``by_name``: the dimensions before it)."""
    where = f"{source}: dimension '{name}'"
    target = _target(where, name)
    spec = _dimension_spec(where, spec)
    when = _parse_when(where, spec, by_name)
    check = _FieldCheck(where, name, base_fusion if target == "fusion" else base_train,
                        FusionConfig if target == "fusion" else TrainConfig)
    if "choices" in spec:
        return Dimension(name, target, "categorical", choices=_parse_choices(check, spec),
                         when=when)
    kind, low, high, log, step = _parse_range(source, check, spec)
    return Dimension(name, target, kind, low=low, high=high, log=log, step=step, when=when)


def _target(where: str, name: str) -> str:
    """Which config a dimension's field belongs to: "fusion" or "train"."""
    if name in _DATA_FIELDS:
        raise SpaceError(f"{where}: is set from the data and cannot be searched")
    if name == "epochs":
        raise SpaceError(f"{where}: the budget is set by 'proxy', not searched")
    if name in _FUSION_FIELDS:
        return "fusion"
    if name in _TRAIN_FIELDS:
        return "train"
    raise SpaceError(f"{where}: unknown field; not a FusionConfig or TrainConfig field")


def _dimension_spec(where: str, spec: Any) -> dict[str, Any]:
    """The dimension's mapping (``[32, 64]`` is short for ``{choices: [32, 64]}``)."""
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping with 'choices' or type/low/high, "
                         f"got {spec!r}")
    bad = sorted(set(spec) - _DIM_KEYS)
    if bad:
        raise SpaceError(f"{where}: unknown key(s) {bad}; allowed: {sorted(_DIM_KEYS)}")
    return spec


def _parse_when(where: str, spec: Mapping[str, Any], by_name: Mapping[str, Dimension]
                ) -> dict[str, tuple[Any, ...]]:
    """The dimension's conditions: earlier dimension -> the values that activate it."""
    raw = spec.get("when")
    if raw is not None and not isinstance(raw, dict):
        raise SpaceError(f"{where}: 'when' must be a mapping {{dimension: value(s)}}")
    when: dict[str, tuple[Any, ...]] = {}
    for dep, allowed in (raw or {}).items():
        if dep not in by_name:
            what = "a later dimension" if dep in _FUSION_FIELDS | _TRAIN_FIELDS else \
                "an unknown dimension"
            raise SpaceError(f"{where}: condition on {what} '{dep}'; conditions may only "
                             f"name earlier dimensions ({', '.join(by_name) or 'none'})")
        allowed_t = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        depd = by_name[dep]
        for a in allowed_t:
            if depd.kind == "categorical" and a not in depd.choices:
                raise SpaceError(f"{where}: condition {dep}={a!r} can never hold; "
                                 f"{dep} choices are {list(depd.choices)}")
        when[dep] = allowed_t
    return when


@dataclass(frozen=True)
class _FieldCheck:
    """Validates one value of a dimension's field on the base config: returns the value
    as the config stores it, or raises a SpaceError naming the dimension."""

    where: str
    name: str
    base: Mapping[str, Any]
    cls: type[FusionConfig] | type[TrainConfig]

    def __call__(self, v: Any) -> Any:
        trial = dict(self.base)
        trial[self.name] = v
        try:
            cfg = self.cls.from_dict(trial)
        except ConfigError as e:
            # Values valid alone but invalid with base (heads vs base width) only make a
            # combination problem when width is searched too; report them otherwise.
            raise SpaceError(f"{self.where}: value {v!r} is invalid: {e}") from None
        return getattr(cfg, self.name)

    @property
    def default(self) -> Any:
        """The field's default value (its type tells what a choice must be)."""
        return getattr(self.cls(), self.name)


def _parse_choices(check: _FieldCheck, spec: Mapping[str, Any]) -> tuple[Any, ...]:
    where = check.where
    if "type" in spec and spec["type"] not in ("categorical", None):
        raise SpaceError(f"{where}: 'choices' and type {spec['type']!r} exclude each other")
    if any(k in spec for k in ("low", "high", "log", "step")):
        raise SpaceError(f"{where}: 'choices' excludes low/high/log/step")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpaceError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
    checked = []
    for c in choices:
        if isinstance(c, (dict, list)):
            raise SpaceError(f"{where}: choice {c!r} must be a scalar")
        checked.append(check(_typed_choice(where, c, check.default)))
    if len(set(map(repr, checked))) != len(checked):
        raise SpaceError(f"{where}: duplicate choices in {choices}")
    return tuple(checked)


def _parse_range(source: str, check: _FieldCheck, spec: Mapping[str, Any]
                 ) -> tuple[str, float | int, float | int, bool, float | int | None]:
    """(kind, low, high, log, step) of an int/float dimension."""
    where, name = check.where, check.name
    kind = spec.get("type")
    if kind not in ("int", "float"):
        raise SpaceError(f"{where}: needs 'choices' or type int/float with low and high "
                         f"(got type {kind!r})")
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"{where}: missing '{key}'")
    low = _num(source, name, "low", spec["low"], kind)
    high = _num(source, name, "high", spec["high"], kind)
    if low >= high:
        raise SpaceError(f"{where}: low {low} must be < high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: 'log' must be true/false, got {log!r}")
    if log and low <= 0:
        raise SpaceError(f"{where}: log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _num(source, name, "step", step, kind)
        if step <= 0:
            raise SpaceError(f"{where}: step must be > 0, got {step}")
        if log:
            raise SpaceError(f"{where}: step cannot be combined with log")
    # The field itself must accept this kind of number, and both ends must be valid.
    field_type = type(check.default)
    if field_type is bool or field_type is str:
        raise SpaceError(f"{where}: field is {field_type.__name__}; use 'choices'")
    if field_type is int and kind == "float":
        raise SpaceError(f"{where}: field is an integer; use type int")
    check(low)
    check(high)
    return kind, low, high, log, step


def _typed_choice(where: str, c: Any, default: Any) -> Any:
    """A choice of the field's type (a numeric string for a float field becomes a float).

    A number or bool where the field wants a string (or vice versa) is a type error even
    where from_dict would coerce it; say so precisely.
    """
    if isinstance(default, bool) and not isinstance(c, bool):
        raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is true/false")
    if isinstance(default, str) and not isinstance(c, str) and c is not False:
        raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a string")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and (
            isinstance(c, bool) or not isinstance(c, (int, float))):
        # YAML 1.1 reads 1e-4 as a string: accept numeric strings for float fields.
        if isinstance(default, float) and isinstance(c, str):
            try:
                return float(c)
            except ValueError:
                raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a "
                                 "number") from None
        raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a number")
    return c
