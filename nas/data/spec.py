"""Data spec strings: ``synthetic[:key=value,...]``, ``digits[:key=value,...]`` or a
feature-directory path."""

from __future__ import annotations

import os

from nas.data._split import RetrievalData
from nas.data.digits import DigitsSpec, digits_spec_from_options, load_digits_data
from nas.data.synthetic import SyntheticSpec, make_synthetic, spec_from_options
from nas.errors import DataError

__all__ = ["parse_spec", "load_data"]


def parse_spec(spec: str) -> SyntheticSpec | DigitsSpec | str:
    """A :class:`SyntheticSpec` for ``synthetic...``, a :class:`DigitsSpec` for ``digits...``,
    else the directory path.

    ``synthetic:clips=2000,seed=1`` sets fields of :class:`SyntheticSpec` (``preset=NAME``
    first, ``dim=D`` for all three feature dims); ``digits:train_clips=600`` fields of
    :class:`DigitsSpec`. Raises :class:`DataError` naming the bad key, value or path.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec must be 'synthetic[:key=value,...]', 'digits[:key=value,...]' "
                        f"or a directory, got {spec!r}")
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if head in ("synthetic", "digits"):
        options: dict[str, str] = {}
        if sep and not rest.strip():
            raise DataError(f"data spec {spec!r}: nothing after '{head}:'")
        for item in filter(None, (p.strip() for p in rest.split(","))) if sep else ():
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key or not value.strip():
                raise DataError(f"data spec {spec!r}: {item!r} is not key=value")
            if key in options:
                raise DataError(f"data spec {spec!r}: key {key!r} given twice")
            options[key] = value.strip()
        from_options = spec_from_options if head == "synthetic" else digits_spec_from_options
        return from_options(options, source=f"data spec {spec!r}")
    path = os.path.expanduser(spec)
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise DataError(f"data spec {spec!r}: {path} {what} (expected "
                        "'synthetic[:key=value,...]', 'digits[:key=value,...]' or a feature "
                        "directory with train/ [val/] [test/])")
    return path


def load_data(spec: str) -> RetrievalData:
    """Load (or generate) the dataset named by ``spec``; everything is validated first."""
    parsed = parse_spec(spec)
    if isinstance(parsed, SyntheticSpec):
        return make_synthetic(parsed, name=spec.strip())
    if isinstance(parsed, DigitsSpec):
        return load_digits_data(parsed, name=spec.strip())
    from nas.data.features import read_feature_dir

    return read_feature_dir(parsed, name=spec.strip())
