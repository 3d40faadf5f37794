"""The shipped search spaces (``gated_fusion.yaml``, ``quick.yaml``), installed with the package.

The top-level ``search_spaces/`` folder of a clone holds the same files for users to read
and copy; ``tests/test_install.py`` checks that both copies are byte for byte equal.
"""
