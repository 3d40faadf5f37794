"""Fixtures of the report tests; the study builders live in report_helpers.py (a module with a
unique name: several test folders have a conftest.py, so `from conftest import` is ambiguous)."""

from __future__ import annotations

from typing import Any

import pytest

from report_helpers import make_study


@pytest.fixture
def study() -> Any:
    return make_study()
