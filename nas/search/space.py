"""Search-space files: load, validate, and turn a trial's suggestions into configs.

A space file is YAML (read with ``yaml.safe_load``)::

    name: quick
    description: a few dimensions at tiny sizes
    data: "synthetic:clips=96,seed=0"      # default --data for this space (optional)
    trials: 8                              # default --trials (optional)
    time_budget: 5m                        # default --time-budget (optional; s, m, h)
    base:                                  # fixed fields of every trial
      fusion: {width: 32, layers: 1, heads: 2}
      train:  {batch_size: 16, epochs: 2}
    dimensions:                            # in sampling order
      width:   {choices: [32, 64]}
      layers:  {type: int, low: 1, high: 2}
      lr:      {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      attn_temperature: {choices: [none, scalar, per_head]}
      rerank_k: {choices: [0, 16], when: {query_fusion: [scalar, per_head]}}
    proxy: {min_budget: 0.5, max_budget: 2, eta: 2}

Each dimension is named after a ``FusionConfig`` or ``TrainConfig`` field (which one is
resolved by name; a name in neither is an error). A dimension has either ``choices`` (a
categorical) or ``type: int|float`` with ``low``/``high`` (and optional ``log``, ``step``).
``when`` makes a dimension conditional: it is suggested only when every named earlier
dimension took one of the listed values; otherwise the field keeps its base value (and the
trial has no parameter of that name, which is how Optuna represents conditional spaces).

Canonical configs. Fields that cannot change a config's model or scores are reset so
equivalent trials share a config id: ``rerank_k`` is 0 for text-agnostic configs (it only
applies to text-conditioned scoring).

Invalid combinations. Every single choice is validated when the file is loaded (by
building the configs). Combinations of values can still be impossible (heads that do not
divide width); ``suggest`` then raises :class:`InvalidCombination`, and the driver records
that trial as infeasible (FAIL, ``status=infeasible``, the config's own message as the
reason) and teaches it to the sampler as a violated constraint. ``check_pairs`` lists such
pairs up front so ``nas spaces validate`` can warn about them; the shipped spaces have none.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from nas.config import ConfigError, FusionConfig, TrainConfig
from nas.errors import SpaceError

__all__ = [
    "Dimension",
    "InvalidCombination",
    "ProxyBudget",
    "SearchSpace",
    "parse_duration",
    "load_space",
    "parse_space",
    "resolve_space_path",
    "shipped_spaces",
]

_FUSION_FIELDS = set(FusionConfig.field_names())
_TRAIN_FIELDS = set(TrainConfig.field_names())
# Set from the data, never searched: the model's input dims must match the features.
_DATA_FIELDS = {"video_dim", "audio_dim", "text_dim", "max_frames"}
_DIM_KEYS = {"choices", "type", "low", "high", "log", "step", "when"}
_TOP_KEYS = {"name", "description", "data", "trials", "time_budget", "base", "dimensions",
             "proxy"}

# The shipped spaces are package data (``nas/spaces/*.yaml``), so an installed wheel has
# them; a clone's top-level ``search_spaces/`` holds the same files for users to read.
_SPACES_PACKAGE = "nas.spaces"


class InvalidCombination(ValueError):
    """The suggested values build no valid config (e.g. heads do not divide width)."""


@dataclass(frozen=True)
class ProxyBudget:
    """Successive-halving rungs in epochs: rung r = min_budget * eta**r, last = max_budget."""

    min_budget: float
    max_budget: float
    eta: float

    def rungs(self) -> list[float]:
        """Epochs at which a trial is evaluated (and may be stopped); last = full budget."""
        out: list[float] = []
        b = self.min_budget
        while b < self.max_budget - 1e-9:
            out.append(round(b, 6))
            b *= self.eta
        out.append(float(self.max_budget))
        return out

    def check(self, where: str) -> None:
        """Raise SpaceError unless 0 < min_budget <= max_budget and eta > 1."""
        if not (self.min_budget > 0):
            raise SpaceError(f"{where}: min_budget must be > 0, got {self.min_budget}")
        if not (self.max_budget >= self.min_budget):
            raise SpaceError(f"{where}: max_budget {self.max_budget} is below min_budget "
                             f"{self.min_budget}")
        if not (self.eta > 1):
            raise SpaceError(f"{where}: eta must be > 1, got {self.eta}")


@dataclass(frozen=True)
class Dimension:
    """One searched field: categorical ``choices`` or an int/float range."""

    name: str
    target: str  # "fusion" or "train"
    kind: str  # "categorical" | "int" | "float"
    choices: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension (imported lazily)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )
        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log,
                                   step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    def active(self, values: Mapping[str, Any]) -> bool:
        """True when every condition holds on the values suggested so far."""
        return all(values.get(d) in allowed for d, allowed in self.when.items())

    def finite_values(self, limit: int = 64) -> list[Any] | None:
        """All values when there are at most ``limit`` of them, else None."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            vals = list(range(int(self.low), int(self.high) + 1, step))
            return vals if len(vals) <= limit else None
        return None

    def describe(self) -> str:
        """Short text for ``nas spaces show``."""
        if self.kind == "categorical":
            return "{" + ", ".join(_fmt(c) for c in self.choices) + "}"
        s = f"{self.kind} [{_fmt(self.low)}, {_fmt(self.high)}]"
        if self.log:
            s += " log"
        if self.step is not None:
            s += f" step {_fmt(self.step)}"
        return s


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True)
class SearchSpace:
    """A loaded, validated space: base configs, ordered dimensions and proxy budget."""

    name: str
    path: str
    text: str
    description: str
    base_fusion: dict[str, Any]
    base_train: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    proxy: ProxyBudget
    data: str | None = None
    trials: int | None = None
    time_budget_s: float | None = None

    # ---------------------------------------------------------------- configs
    def build(self, values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
              ) -> tuple[FusionConfig, TrainConfig]:
        """Configs from base + suggested values (+ data-set fields such as ``video_dim``).

        Raises InvalidCombination when the values build no valid config.
        """
        fusion = dict(self.base_fusion)
        train = dict(self.base_train)
        for d in self.dimensions:
            if d.name in values:
                (fusion if d.target == "fusion" else train)[d.name] = values[d.name]
        fusion.update(overrides or {})
        # The proxy budget is the full budget of every trial of this space.
        train["epochs"] = float(self.proxy.max_budget)
        try:
            f, t = FusionConfig.from_dict(fusion), TrainConfig.from_dict(train)
        except ConfigError as e:
            raise InvalidCombination(str(e)) from None
        # rerank_k only matters when scoring fuses each clip with the text; for a
        # text-agnostic config every value is the same model and the same scores.
        # Canonicalise it so such trials share one config id (and are not trained twice).
        if f.rerank_k != 0 and not f.text_conditioned:
            f = f.replace(rerank_k=0)
        return f, t

    def suggest(self, suggest: Callable[[str, Any], Any],
                overrides: Mapping[str, Any] | None = None,
                ) -> tuple[dict[str, Any], FusionConfig, TrainConfig]:
        """Suggest every active dimension in order, then build the configs.

        ``suggest(name, distribution)`` returns a value (e.g. ``trial._suggest``).
        Returns (params, fusion, train); raises InvalidCombination for impossible combos
        (the params are attached as ``e.params``).
        """
        values: dict[str, Any] = {}
        for d in self.dimensions:
            if d.active(values):
                values[d.name] = suggest(d.name, d.distribution())
        try:
            fusion, train = self.build(values, overrides)
        except InvalidCombination as e:
            e.params = values  # type: ignore[attr-defined]
            raise
        return values, fusion, train

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of all dimensions (for ``enqueue_trial``/``add_trial``)."""
        return {d.name: d.distribution() for d in self.dimensions}

    def params_of(self, fusion: FusionConfig, train: TrainConfig) -> dict[str, Any] | None:
        """The parameters that reproduce these configs in this space, or None.

        None when the configs differ from base in a field the space does not search, or a
        value lies outside its dimension. Used for warm-start enqueueing.
        """
        values: dict[str, Any] = {}
        for d in self.dimensions:
            if not d.active(values):
                continue
            v = getattr(fusion if d.target == "fusion" else train, d.name)
            if not _contains(d, v):
                return None
            values[d.name] = v
        try:
            f2, t2 = self.build(values, {k: getattr(fusion, k) for k in _DATA_FIELDS})
        except InvalidCombination:
            return None
        if f2 != fusion or t2.replace(epochs=train.epochs) != train:
            return None
        return values

    def reference(self) -> tuple[FusionConfig, TrainConfig] | None:
        """The reference configuration restricted to the space: base with every searched
        field at its FusionConfig/TrainConfig default (or the nearest choice when the
        default is not in the space). None when that builds nothing valid."""
        values: dict[str, Any] = {}
        fdef, tdef = FusionConfig(), TrainConfig()
        for d in self.dimensions:
            if not d.active(values):
                continue
            default = getattr(fdef if d.target == "fusion" else tdef, d.name)
            if d.name in (self.base_fusion if d.target == "fusion" else self.base_train):
                default = (self.base_fusion if d.target == "fusion"
                           else self.base_train)[d.name]
            values[d.name] = _nearest(d, default)
        try:
            return self.build(values)
        except InvalidCombination:
            return None

    def reference_params(self) -> dict[str, Any]:
        """Parameters of :meth:`reference` (what is enqueued first)."""
        values: dict[str, Any] = {}
        ref = self.reference()
        if ref is None:
            return values
        for d in self.dimensions:
            if d.active(values):
                values[d.name] = getattr(ref[0] if d.target == "fusion" else ref[1], d.name)
        return values

    def check_pairs(self) -> list[str]:
        """Pairs of finite dimension values that build no valid config (warnings)."""
        problems: list[str] = []
        ref = self.reference_params()
        finite = [(d, d.finite_values()) for d in self.dimensions]
        finite = [(d, v) for d, v in finite if v is not None]
        for (d1, v1), (d2, v2) in itertools.combinations(finite, 2):
            for a, b in itertools.product(v1, v2):
                vals = dict(ref)
                vals[d1.name], vals[d2.name] = a, b
                try:
                    self.build(vals)
                except InvalidCombination as e:
                    problems.append(f"{d1.name}={_fmt(a)} with {d2.name}={_fmt(b)}: {e}")
        return problems

    def table(self) -> str:
        """A text table of the dimensions (``nas spaces show``)."""
        rows = [("dimension", "config", "values", "when")]
        for d in self.dimensions:
            when = ", ".join(f"{k} in {{{', '.join(_fmt(x) for x in v)}}}"
                             for k, v in d.when.items())
            rows.append((d.name, d.target, d.describe(), when or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = [f"space {self.name} ({self.path}): {len(self.dimensions)} dimensions",
                f"proxy: rungs {self.proxy.rungs()} epochs (eta {_fmt(self.proxy.eta)})"]
        if self.description:
            head.insert(1, self.description.strip())
        return "\n".join(head + [""] + lines)


def _contains(d: Dimension, v: Any) -> bool:
    if d.kind == "categorical":
        return any(v == c and type(v) is type(c) or (isinstance(v, float) and v == c)
                   for c in d.choices)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return float(d.low) <= float(v) <= float(d.high)


def _nearest(d: Dimension, v: Any) -> Any:
    """The dimension's value closest to v (v itself when it is in the dimension)."""
    if _contains(d, v):
        return int(v) if d.kind == "int" else v
    if d.kind == "categorical":
        nums = [c for c in d.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if nums and isinstance(v, (int, float)) and not isinstance(v, bool):
            return min(nums, key=lambda c: abs(c - v))
        return d.choices[0]
    lo, hi = d.low, d.high
    x = min(max(v, lo), hi) if isinstance(v, (int, float)) else lo
    return int(round(x)) if d.kind == "int" else float(x)


# ----------------------------------------------------------------------------- loading

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
        dims.append(_parse_dimension(source, str(name), spec, [d.name for d in dims],
                                     {d.name: d for d in dims}, base_fusion, base_train))

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


def _parse_dimension(source: str, name: str, spec: Any, earlier: Sequence[str],
                     by_name: Mapping[str, Dimension], base_fusion: dict[str, Any],
                     base_train: dict[str, Any]) -> Dimension:
    where = f"{source}: dimension '{name}'"
    if name in _DATA_FIELDS:
        raise SpaceError(f"{where}: is set from the data and cannot be searched")
    if name in _FUSION_FIELDS:
        target = "fusion"
    elif name in _TRAIN_FIELDS:
        target = "train"
    else:
        raise SpaceError(f"{where}: unknown field; not a FusionConfig or TrainConfig field")
    if name == "epochs":
        raise SpaceError(f"{where}: the budget is set by 'proxy', not searched")
    if isinstance(spec, list):  # shorthand: `width: [32, 64]`
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping with 'choices' or type/low/high, "
                         f"got {spec!r}")
    bad = sorted(set(spec) - _DIM_KEYS)
    if bad:
        raise SpaceError(f"{where}: unknown key(s) {bad}; allowed: {sorted(_DIM_KEYS)}")

    when: dict[str, tuple[Any, ...]] = {}
    for dep, allowed in (spec.get("when") or {}).items():
        if dep not in by_name:
            what = "a later dimension" if dep in _FUSION_FIELDS | _TRAIN_FIELDS else \
                "an unknown dimension"
            raise SpaceError(f"{where}: condition on {what} '{dep}'; conditions may only "
                             f"name earlier dimensions ({', '.join(earlier) or 'none'})")
        allowed_t = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        depd = by_name[dep]
        for a in allowed_t:
            if depd.kind == "categorical" and a not in depd.choices:
                raise SpaceError(f"{where}: condition {dep}={a!r} can never hold; "
                                 f"{dep} choices are {list(depd.choices)}")
        when[dep] = allowed_t
    if spec.get("when") is not None and not isinstance(spec.get("when"), dict):
        raise SpaceError(f"{where}: 'when' must be a mapping {{dimension: value(s)}}")

    base = base_fusion if target == "fusion" else base_train
    cls = FusionConfig if target == "fusion" else TrainConfig

    def check_value(v: Any) -> Any:
        trial = dict(base)
        trial[name] = v
        try:
            cfg = cls.from_dict(trial)
        except ConfigError as e:
            # Values valid alone but invalid with base (heads vs base width) only make a
            # combination problem when width is searched too; report them otherwise.
            raise SpaceError(f"{where}: value {v!r} is invalid: {e}") from None
        return getattr(cfg, name)

    if "choices" in spec:
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
            checked.append(_check_choice(where, c, check_value, name, base, cls))
        if len(set(map(repr, checked))) != len(checked):
            raise SpaceError(f"{where}: duplicate choices in {choices}")
        return Dimension(name, target, "categorical", choices=tuple(checked), when=when)

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
    field_type = type(getattr(cls(), name))
    if field_type is bool or field_type is str:
        raise SpaceError(f"{where}: field is {field_type.__name__}; use 'choices'")
    if field_type is int and kind == "float":
        raise SpaceError(f"{where}: field is an integer; use type int")
    check_value(low)
    check_value(high)
    return Dimension(name, target, kind, low=low, high=high, log=log, step=step, when=when)


def _check_choice(where: str, c: Any, check_value: Callable[[Any], Any], name: str,
                  base: dict[str, Any], cls: type) -> Any:
    default = getattr(cls(), name)
    # A number or bool where the field wants a string (or vice versa) is a type error even
    # where from_dict would coerce it; say so precisely.
    if isinstance(default, bool) and not isinstance(c, bool):
        raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is true/false")
    if isinstance(default, str) and not isinstance(c, str) and c is not False:
        raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a string")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and (
            isinstance(c, bool) or not isinstance(c, (int, float))):
        # YAML 1.1 reads 1e-4 as a string: accept numeric strings for float fields.
        if isinstance(default, float) and isinstance(c, str):
            try:
                c = float(c)
            except ValueError:
                raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a "
                                 "number") from None
        else:
            raise SpaceError(f"{where}: choice {c!r} has the wrong type; field is a number")
    return check_value(c)
