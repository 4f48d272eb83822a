"""Types of the C module ``_fill.c`` (built by the compiled build only)."""

from typing import Any

class Filler:
    """``Filler(cls, names)(*values)``: an object of ``cls`` with slot
    ``names[i]`` set to ``values[i]``, made without ``cls.__init__``."""

    def __init__(self, cls: type, names: tuple[str, ...], /) -> None: ...
    def __call__(self, *values: object) -> Any: ...
    @property
    def cls(self) -> type | None:
        """The class whose objects this makes (None once cleared)."""
