"""An MTA-STS cache kept in a JSON file (RFC 8461 §5.1).

:class:`FileSTSCache` is the pure :class:`~smtp_rtls.policy.mtasts.STSCache`
plus its file: it loads the file when it is made and saves it after every
change.  What the document holds, and the rules that keep a damaged one from
raising, are the policy module's (:meth:`~smtp_rtls.policy.mtasts.STSCache.to_json`,
:meth:`~smtp_rtls.policy.mtasts.STSCache.from_json`); this module only moves
the text to and from the disk.
"""

from __future__ import annotations

import logging
import os
import tempfile

from ..policy.mtasts import STSCache

__all__ = ["FileSTSCache"]

log = logging.getLogger(__name__)


class FileSTSCache(STSCache):
    """An :class:`~smtp_rtls.policy.mtasts.STSCache` loaded from and saved to ``path``.

    Loading never raises for what the file holds: a missing file is an empty
    cache; a file that cannot be read or parsed is ignored, and an entry with
    a bad value is dropped, each with a warning; the policy is then fetched
    again.  Every change is saved with an atomic replace (a temporary file in
    the same folder, fsync, :func:`os.replace`), so a reader sees the old file
    or the new one, never half of one.  A failed save is logged, not raised:
    the policy is still applied from memory, and delivery must not fail
    because a cache file could not be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Load the cache saved at ``path``, or start empty when there is none."""
        super().__init__(on_change=self._save_or_warn)
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("ignoring unreadable MTA-STS cache %s: %s", self.path, exc)
            return
        self._restore(text, self.path)

    def save(self) -> None:
        """Write the cache to its file atomically; raise :class:`OSError` on failure."""
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(prefix=".mta-sts-cache.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise

    def _save_or_warn(self) -> None:
        try:
            self.save()
        except OSError as exc:
            log.warning("could not save MTA-STS cache %s: %s", self.path, exc)
