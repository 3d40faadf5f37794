"""Retrieval data: the synthetic generator, feature directories, and ``load_data(spec)``.

Specs: ``"synthetic"``, ``"synthetic:clips=2000,seed=1,frames=12"``,
``"synthetic:preset=msrvtt"`` (see :mod:`nas.data.synthetic` for the keys), ``"digits"`` or
``"digits:train_clips=600"`` (the shipped real-signal set, :mod:`nas.data.digits`), or the
path of a feature directory (layout and checks in :mod:`nas.data.features`).
"""

from nas.data._split import DataShapes, RetrievalData, Split, fit_to_data, model_inputs
from nas.data.digits import DigitsSpec, load_digits_data
from nas.data.features import read_feature_dir, write_feature_dir
from nas.data.spec import load_data, parse_spec
from nas.data.synthetic import PRESETS, SyntheticSpec, linear_probe, make_synthetic

__all__ = ["Split", "RetrievalData", "DataShapes", "model_inputs", "fit_to_data", "load_data",
           "parse_spec",
           "SyntheticSpec", "PRESETS", "make_synthetic", "linear_probe", "read_feature_dir",
           "write_feature_dir", "DigitsSpec", "load_digits_data"]
