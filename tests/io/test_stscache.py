"""FileSTSCache: the MTA-STS cache (RFC 8461 §5.1) kept in a JSON file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from smtp_rtls.io.stscache import FileSTSCache
from smtp_rtls.policy.mtasts import STSCache, STSOutcome, STSPolicy
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSResponse,
    Request,
    Result,
    run_lookup,
)

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"


class Peer:
    """Answers the TXT query with id=one and the policy fetch with POLICY; counts fetches."""

    def __init__(self) -> None:
        self.fetches = 0

    def __call__(self, request: Request) -> Result:
        if isinstance(request, DNSQuery):
            return DNSAnswer(request, "NOERROR", ["v=STSv1; id=one"], True)
        self.fetches += 1
        return HTTPSResponse(request, 200, "text/plain", POLICY.encode())


def discover(cache: STSCache, peer: Peer, now: float) -> STSOutcome:
    return run_lookup(cache.discover("example.com", now), peer)


def test_cache_persists_to_json_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "sts.json"
    cache, peer = FileSTSCache(path), Peer()
    assert cache.path == str(path)
    policy = discover(cache, peer, 50.0).policy
    saved = json.loads(path.read_text())
    assert saved["policies"]["example.com"]["policy_id"] == "one"
    assert path.read_text() == cache.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["sts.json"]  # no temp file left behind
    again = FileSTSCache(path)
    entry = again.get("example.com", 60.0)
    assert entry is not None and entry.policy == policy and entry.fetched_at == 50.0
    assert discover(again, peer, 60.0).from_cache
    assert peer.fetches == 1


def test_missing_file_is_an_empty_cache_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        cache = FileSTSCache(tmp_path / "sts.json")
    assert cache.get("example.com", 0.0) is None
    assert not caplog.records
    assert not (tmp_path / "sts.json").exists()  # nothing to save yet


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"policies": {"x": {"mode": "enforce"}}}',
        b"\x00\xff",  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser goes
        b'{"policies": {"x.com": {"max_age": ' + b"9" * 5000 + b"}}}",  # > 4300 digits
        b"null",
    ],
    ids=["not json", "array", "bad entry only", "not utf-8", "nested", "huge integer", "null"],
)
def test_rfc8461_5_1_damaged_cache_file_is_ignored_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "sts.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        cache = FileSTSCache(path)
    assert cache.get("x", 0.0) is None and cache.get("x.com", 0.0) is None
    assert "ignoring unreadable MTA-STS cache" in caplog.text
    assert str(path) in caplog.text
    # and the next store replaces the bad file with a good one
    cache.store("example.com", STSPolicy.parse(POLICY, "i"), 0.0)
    assert FileSTSCache(path).get("example.com", 1.0) is not None


def test_rfc8461_5_1_cache_file_entry_with_a_bad_value_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sts.json"
    good = {"mode": "enforce", "mx": ["mail.example.com"], "max_age": 604800}
    good |= {"policy_id": "one", "fetched_at": 50.0}
    bad = good | {"max_age": -1}
    path.write_text(json.dumps({"version": 1, "policies": {"good.com": good, "bad.com": bad}}))
    with caplog.at_level(logging.WARNING):
        cache = FileSTSCache(path)
    assert cache.get("bad.com", 60.0) is None
    kept = cache.get("good.com", 60.0)
    assert kept is not None and kept.policy.mx == ("mail.example.com",)
    assert "1 dropped ('bad.com'" in caplog.text


def test_rfc8461_5_1_cache_file_survives_a_round_trip_through_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "sts.json"
    cache = FileSTSCache(path)
    cache.store("Example.COM", STSPolicy.parse(POLICY, "one"), 1.5)
    cache.store("none.example", STSPolicy.parse("version: STSv1\nmode: none\nmax_age: 9\n"), 2)
    again = FileSTSCache(path)
    for domain in ("example.com", "none.example"):
        entry = again.get(domain, 3.0)
        assert entry is not None and entry == cache.get(domain, 3.0)


def test_save_is_an_atomic_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new text goes to a synced temporary file in the same folder, then os.replace."""
    path = tmp_path / "sts.json"
    cache = FileSTSCache(path)
    cache.store("example.com", STSPolicy.parse(POLICY, "one"), 1.0)
    before = path.read_bytes()
    synced: list[int] = []
    replaced: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        assert synced, "replaced before the temporary file was synced"
        assert os.path.dirname(src) == str(tmp_path)
        assert json.loads(Path(src).read_text())["policies"]["example.com"]["policy_id"] == "two"
        assert path.read_bytes() == before  # the old file is whole until the replace
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cache.store("example.com", STSPolicy.parse(POLICY, "two"), 2.0)
    assert len(replaced) == 1 and replaced[0][1] == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["sts.json"]
    entry = FileSTSCache(path).get("example.com", 3.0)
    assert entry is not None and entry.policy.policy_id == "two"


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sts.json"
    cache = FileSTSCache(path)
    cache.store("example.com", STSPolicy.parse(POLICY, "one"), 1.0)
    before = path.read_bytes()

    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with caplog.at_level(logging.WARNING):
        cache.store("example.com", STSPolicy.parse(POLICY, "two"), 2.0)
    assert "could not save MTA-STS cache" in caplog.text
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sts.json"]
    entry = cache.get("example.com", 3.0)  # memory still has the new policy
    assert entry is not None and entry.policy.policy_id == "two"


def test_unwritable_cache_file_warns_and_leaves_no_temp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory where the file should be: reading and os.replace really fail."""
    path = tmp_path / "sts.json"
    path.mkdir()
    with caplog.at_level(logging.WARNING):
        cache = FileSTSCache(path)
        peer = Peer()
        outcome = discover(cache, peer, 0.0)  # stores, the save fails
    assert outcome.policy is not None  # delivery is not hurt by a cache write failure
    assert "ignoring unreadable MTA-STS cache" in caplog.text
    assert "could not save" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sts.json"]
    with pytest.raises(OSError):
        cache.save()
