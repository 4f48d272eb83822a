"""NEED_DATA and PAUSED: the two answers of ``next_event()`` that are not events."""

from __future__ import annotations

__all__ = ["NEED_DATA", "PAUSED", "Sentinel"]


class Sentinel(type):
    """A class that is its own type and prints as its name (the h11 idiom)."""

    def __new__(
        cls: type[Sentinel], name: str, bases: tuple[type, ...], namespace: dict[str, object]
    ) -> Sentinel:
        self = super().__new__(cls, name, bases, namespace)
        self.__class__ = self  # type: ignore[assignment]
        return self

    def __repr__(self) -> str:
        return self.__name__


class NEED_DATA(Sentinel, metaclass=Sentinel):
    """``next_event()`` needs more bytes: call ``receive_data()``."""


class PAUSED(Sentinel, metaclass=Sentinel):
    """``next_event()`` waits for the application: a reply is owed (server)."""
