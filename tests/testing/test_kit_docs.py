"""docs/testing.rst's examples run, as the page says they do.

Every ``code-block:: python`` of the page that starts with a ``# test_*.py``
line is a complete test module: they are copied into a temporary folder and
run by pytest in a child process, with the plugin as an installed package
gets it (the ``pytest11`` entry point), and every test must pass.  The child
is bounded in time and leaves nothing running (its peers stop with it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "testing.rst"
TIMEOUT = 240

_BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", re.MULTILINE)


def examples() -> dict[str, str]:
    """The page's test modules, by file name."""
    found = {}
    for block in _BLOCK.findall(PAGE.read_text()):
        code = "\n".join(line[4:] for line in block.splitlines()).strip() + "\n"
        first = code.splitlines()[0]
        match = re.fullmatch(r"# (test_\w+\.py)", first)
        if match:
            found[match[1]] = code
    return found


def plugin_args() -> list[str]:
    """``-p`` for the plugin when the package was installed without its entry
    point (an old editable install); nothing when pytest loads it itself."""
    names = {ep.name for ep in entry_points(group="pytest11")}
    return [] if "smtp_rtls" in names else ["-p", "smtp_rtls.testing.plugin"]


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args(), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_page_has_its_examples() -> None:
    assert set(examples()) == {
        "test_properties.py",
        "test_pair.py",
        "test_client.py",
        "test_downgrades.py",
        "test_server_attacks.py",
        "test_man_in_the_middle.py",
    }


def test_every_example_of_the_testing_page_passes(tmp_path: Path) -> None:
    for name, code in examples().items():
        (tmp_path / name).write_text(code)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    # 2 + 2 + 1 + (8 + 2) + (16 + 1)
    assert re.match(r"33 passed in ", summary), result.stdout


def test_the_plugin_is_registered_by_its_entry_point() -> None:
    [plugin] = [ep for ep in entry_points(group="pytest11") if ep.name == "smtp_rtls"]
    assert plugin.value == "smtp_rtls.testing.plugin"


def test_misbehaving_server_without_a_name_says_how_to_choose_one(tmp_path: Path) -> None:
    (tmp_path / "test_unnamed.py").write_text(
        "def test_it(misbehaving_server):\n    pass\n\n"
        "def test_unknown(make_misbehaving_server):\n"
        "    import pytest\n"
        "    with pytest.raises(LookupError, match='strip-starttls'):\n"
        "        make_misbehaving_server('no-such-peer')\n"
    )
    result = run_pytest(tmp_path, "-rE")
    assert "misbehaving_server needs a name: parametrize it indirectly" in result.stdout
    assert "1 passed, 1 error" in result.stdout, result.stdout


def test_the_plugin_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "test_off.py").write_text("def test_it(smtp_pair):\n    pass\n")
    if plugin_args():
        pytest.fail("the entry point is not installed: reinstall the package")
    result = run_pytest(tmp_path, "-p", "no:smtp_rtls")
    assert "fixture 'smtp_pair' not found" in result.stdout


def _imported_by(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return {name.partition(".")[0] for name in out}


def test_hypothesis_is_imported_only_by_the_strategies() -> None:
    """The core, the adapters, the handlers and the command line never import
    hypothesis, pytest or trustme; in the kit only the strategies import
    hypothesis, and the plugin imports nothing until a fixture runs."""
    core = _imported_by(
        "import smtp_rtls, smtp_rtls.policy, smtp_rtls.session, smtp_rtls.handlers\n"
        "import smtp_rtls.io.sync, smtp_rtls.io.asyncio, smtp_rtls.io.fulfil, smtp_rtls.cli"
    )
    assert not core & {"hypothesis", "pytest", "_pytest", "trustme"}
    kit = _imported_by(
        "import smtp_rtls.testing, smtp_rtls.testing.pair, smtp_rtls.testing.peers\n"
        "import smtp_rtls.testing.server"
    )
    assert "hypothesis" not in kit and "trustme" in kit
    plugin = _imported_by("import smtp_rtls.testing.plugin")
    assert not plugin & {"hypothesis", "trustme"}
    assert "hypothesis" in _imported_by("import smtp_rtls.testing.strategies")
