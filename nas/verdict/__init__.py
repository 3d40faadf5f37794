"""Verdicts: which variants of the plan pay, and at what cost (``nas verdict``).

- ``stats``: paired t-intervals and the rule that gives each variant one word;
- ``jobs``: the planned runs (base and toggled point per seed) and how one is executed;
- ``record``: the companion study ``<study>:verdict`` holding one trial per finished run;
- ``quick``: the quick estimate from the study's own trials (no training, no word);
- ``core``: ``run_verdict``; ``output``: table, CSV/JSON, study attribute and artifact.

The variants and how each is switched on and off live in ``nas.variants``.
Importing this package imports nothing heavy; import the submodules.
"""
