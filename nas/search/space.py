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

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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

# Set from the data, never searched: the model's input dims must match the features.
_DATA_FIELDS = {"video_dim", "audio_dim", "text_dim", "max_frames"}


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
        lo, hi = self.bounds
        if self.kind == "int":
            return IntDistribution(int(lo), int(hi), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(lo), float(hi), log=self.log,
                                 step=None if self.step is None else float(self.step))

    @property
    def bounds(self) -> tuple[float | int, float | int]:
        """(low, high) of an int/float dimension."""
        if self.low is None or self.high is None:
            raise TypeError(f"dimension {self.name!r} is categorical: it has no bounds")
        return self.low, self.high

    def active(self, values: Mapping[str, Any]) -> bool:
        """True when every condition holds on the values suggested so far."""
        return all(values.get(d) in allowed for d, allowed in self.when.items())

    def finite_values(self, limit: int = 64) -> list[Any] | None:
        """All values when there are at most ``limit`` of them, else None."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            lo, hi = self.bounds
            vals = list(range(int(lo), int(hi) + 1, step))
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
        finite = [(d, v) for d in self.dimensions
                  if (v := d.finite_values()) is not None]
        for (d1, v1), (d2, v2) in itertools.combinations(finite, 2):
            for a, b in itertools.product(v1, v2):
                vals = dict(ref)
                vals[d1.name], vals[d2.name] = a, b
                try:
                    self.build(vals)
                except InvalidCombination as e:
                    problems.append(f"{d1.name}={_fmt(a)} with {d2.name}={_fmt(b)}: {e}")
        return problems

    def differences(self, other: "SearchSpace") -> list[str]:
        """What makes ``other`` search a different space than this one (empty: the same).

        Compares what the search samples and builds (base configs, dimensions in order
        with their ranges, choices and conditions), not the file's text: comments,
        layout, key order, ``name``, ``description`` and the run defaults (``data``,
        ``trials``, ``time_budget``) do not count; the proxy budget is compared as rungs
        by the driver.
        """
        out: list[str] = []
        for sec, a, b in (("fusion", self.base_fusion, other.base_fusion),
                          ("train", self.base_train, other.base_train)):
            for k in sorted(set(a) | set(b)):
                if a.get(k, "(unset)") != b.get(k, "(unset)"):
                    out.append(f"base.{sec}.{k} {a.get(k, '(unset)')!r} -> "
                               f"{b.get(k, '(unset)')!r}")
        mine = {d.name: d for d in self.dimensions}
        theirs = {d.name: d for d in other.dimensions}
        out += [f"dimension '{n}' removed" for n in mine if n not in theirs]
        out += [f"dimension '{n}' added" for n in theirs if n not in mine]
        for n, d in mine.items():
            if n in theirs and d != theirs[n]:
                out.append(f"dimension '{n}' {d.describe()}{_when(d)} -> "
                           f"{theirs[n].describe()}{_when(theirs[n])}")
        common = [n for n in mine if n in theirs]
        if not out and common != [n for n in theirs if n in mine]:
            out.append(f"dimension order {common} -> {[n for n in theirs if n in mine]}")
        return out

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


def _when(d: Dimension) -> str:
    return "" if not d.when else f" when {dict(d.when)}"


def _contains(d: Dimension, v: Any) -> bool:
    if d.kind == "categorical":
        return any(v == c and type(v) is type(c) or (isinstance(v, float) and v == c)
                   for c in d.choices)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    lo, hi = d.bounds
    return float(lo) <= float(v) <= float(hi)


def _nearest(d: Dimension, v: Any) -> Any:
    """The dimension's value closest to v (v itself when it is in the dimension)."""
    if _contains(d, v):
        return int(v) if d.kind == "int" else v
    if d.kind == "categorical":
        nums = [c for c in d.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if nums and isinstance(v, (int, float)) and not isinstance(v, bool):
            return min(nums, key=lambda c: abs(c - v))
        return d.choices[0]
    lo, hi = d.bounds
    x = min(max(v, lo), hi) if isinstance(v, (int, float)) else lo
    return int(round(x)) if d.kind == "int" else float(x)


# Reading space files lives in ``space_file`` (it builds the classes above); its public
# functions are part of this module's API.
from nas.search.space_file import (  # noqa: E402
    load_space,
    parse_duration,
    parse_space,
    resolve_space_path,
    shipped_spaces,
)
