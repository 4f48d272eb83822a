"""Shared pytest configuration; fixtures live in their own modules, registered here."""

# conftest_lab: the session-scoped `lab` fixture (nsd, unbound, MTA-STS host).
pytest_plugins = ["conftest_lab"]
