"""The atheris harnesses of tests/fuzz in CI.

(a) Every committed corpus file is replayed through its harness's
``TestOneInput`` in-process: fast, deterministic, and the seeds (real
sessions, the SMTP smuggling look-alikes, STARTTLS injection, every crash
ever found) stay passing.

(b) Each harness is fuzzed under atheris (libFuzzer) in a subprocess for a
bounded number of runs, from a copy of its corpus, with a fixed seed; a
crash fails the test with the crashing input.  atheris is in the ``test``
extra: without it these tests fail, they are never skipped.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"

# harness -> mutations after the corpus is loaded: about 1.5 s each on the
# 2-core CI machine (pair and data_reader are the slow ones), so that all
# thirteen, with their start-up, take about 30 s.
HARNESSES = {
    "server": 2500,
    "client": 3000,
    "command": 5000,
    "reply": 5000,
    "capabilities": 5000,
    "data_reader": 600,
    "bdat_reader": 1200,
    "tls_required": 5000,
    "mtasts_record": 5000,
    "mtasts_policy": 5000,
    "tlsa": 3000,
    "dsn": 3000,
    "pair": 250,
}
# safety bounds: libFuzzer stops itself after MAX_TOTAL_TIME seconds, and the
# subprocess is killed after SUBPROCESS_TIMEOUT
MAX_TOTAL_TIME = 20
SUBPROCESS_TIMEOUT = 90


def test_atheris_is_installed() -> None:
    # the harnesses need it even in-process; a missing atheris is a broken
    # test environment (it is in the test extra), not a reason to skip
    import atheris

    assert hasattr(atheris, "FuzzedDataProvider")


def test_every_harness_has_a_corpus_and_an_oracle() -> None:
    modules = {p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py")} - {"common"}
    assert modules == set(HARNESSES)
    assert {p.name for p in CORPUS.iterdir()} == set(HARNESSES)
    total = 0
    for name in HARNESSES:
        files = [p for p in (CORPUS / name).iterdir() if p.is_file()]
        assert files, name
        total += sum(p.stat().st_size for p in files)
        doc = importlib.import_module(f"fuzz_{name}").__doc__
        assert doc is not None and "ORACLE" in doc, name
    assert total < 512 * 1024  # the corpus stays small


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_corpus_replays_through_its_harness(name: str) -> None:
    harness = importlib.import_module(f"fuzz_{name}")
    failures = []
    for path in sorted((CORPUS / name).iterdir()):
        data = path.read_bytes()
        try:
            harness.TestOneInput(data)
        except Exception as exc:  # every failure is shown, not only the first
            failures.append(
                f"{path.name}: {type(exc).__name__}: {str(exc)[:300]} (input {data!r:.300})"
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_survives_bounded_fuzzing(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS / name, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    seeds = len(list(corpus.iterdir()))
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / f"fuzz_{name}.py"),
            f"-runs={seeds + HARNESSES[name]}",
            f"-max_total_time={MAX_TOTAL_TIME}",
            "-seed=1",
            "-timeout=20",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
        ],
        cwd=HERE,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    crashes = {p.name: p.read_bytes() for p in artifacts.iterdir()}
    log = done.stderr.decode("utf-8", "replace")
    tail = "\n".join(line for line in log.splitlines() if not line.startswith("INFO: Instrument"))
    assert done.returncode == 0 and not crashes, (
        f"fuzz_{name} crashed (rc {done.returncode}); inputs: {crashes!r}\n{tail[-4000:]}"
    )
    assert "Done " in log, tail[-2000:]  # libFuzzer ran to its bound
