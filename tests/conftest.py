"""Shared pytest configuration; fixtures live in their own modules, registered here."""

# conftest_lab: the session-scoped `lab` fixture (nsd, unbound, MTA-STS host);
# conftest_postfix: `postfix37` and `postfix311`, private Postfix instances;
# conftest_compliance: the interop marker and the compliance matrix it writes.
pytest_plugins = ["conftest_lab", "conftest_postfix", "conftest_compliance"]
