"""Shared pytest configuration; fixtures live in their own modules, registered here."""

# conftest_lab: the session-scoped `lab` fixture (nsd, unbound, MTA-STS host);
# conftest_postfix: `postfix37` and `postfix311`, private Postfix instances.
pytest_plugins = ["conftest_lab", "conftest_postfix"]
