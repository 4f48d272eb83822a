"""Shared pytest configuration; fixtures live in their own modules, registered here."""

# conftest_lab: the session-scoped `lab` fixture (nsd, unbound, MTA-STS host);
# conftest_postfix: `postfix37` and `postfix311`, private Postfix instances;
# conftest_compliance: the interop marker and the compliance matrix it writes.
pytest_plugins = ["conftest_lab", "conftest_postfix", "conftest_compliance"]


def pytest_report_header() -> list[str]:
    """Say which build of smtp_rtls runs: the pure-Python one or the
    compiled core (setup.py, SMTP_RTLS_COMPILE=1)."""
    import smtp_rtls
    from smtp_rtls._build import describe

    return [f"smtp_rtls: {describe()} build, from {smtp_rtls.__path__[0]}"]


def pytest_configure() -> None:
    """With SMTP_RTLS_EXPECT_COMPILED=1 (the test command's second run), refuse
    to run unless every module of the compiled core is compiled: a run that
    silently imported the pure modules would prove nothing about the build."""
    import os

    if os.environ.get("SMTP_RTLS_EXPECT_COMPILED") != "1":
        return
    import pytest

    from smtp_rtls._build import COMPILED, WRITTEN_IN_C, compiled_modules

    missing = sorted({*COMPILED, *WRITTEN_IN_C} - set(compiled_modules()))
    if missing:
        raise pytest.UsageError(f"SMTP_RTLS_EXPECT_COMPILED=1, but not compiled: {missing}")


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    """Skip the ``pure_only`` tests when the core is compiled, and the
    ``compiled_only`` ones when it is not."""
    import pytest

    from smtp_rtls._build import compiled_modules

    if compiled_modules():
        name, build = "pure_only", "pure-Python"
    else:
        name, build = "compiled_only", "compiled"
    for item in items:
        marker = item.get_closest_marker(name)  # type: ignore[attr-defined]
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"{build} build only: {reason}"))  # type: ignore[attr-defined]
