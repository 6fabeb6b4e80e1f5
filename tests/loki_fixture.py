"""pytest fixtures for the Loki test double (tests/doubles/loki.py).

Use them from a test module with ``from loki_fixture import loki, loki_factory  # noqa: F401``
(tests/ is on sys.path under pytest), or list ``pytest_plugins = ["loki_fixture"]`` in conftest.
"""

from __future__ import annotations

import pytest

from doubles.loki import LokiDouble


@pytest.fixture
def loki():
    """A running Loki 3.x double on 127.0.0.1 (random port); stopped after the test."""
    d = LokiDouble("3.5.0").start()
    yield d
    d.stop()


@pytest.fixture
def loki_factory():
    """Make doubles with options: loki_factory(version="2.6.1", max_line_size=1000)."""
    made: list[LokiDouble] = []

    def make(version: str = "3.5.0", **kw) -> LokiDouble:
        d = LokiDouble(version, **kw).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
