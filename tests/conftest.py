"""Shared fixtures. Each area keeps its fixtures in `tests/fixtures/<area>.py`; they are all available here."""

pytest_plugins = [
    "tests.fixtures.upstream",
    "tests.fixtures.discord",
    "tests.fixtures.storage",
]
