"""One registry pattern for every kind of pluggable part: datasets (and their recipe
sections), towers, negative sources (and their specs), fit forms.

A part registers itself where it is defined, with one decorator or call
(``@register(...)``); nothing else lists it. Lookups of an unknown name are
one-line errors naming the recipe field and what exists. Torch-free, so the
recipe layer can use it before torch is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from negscale.errors import NegscaleError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in registration order, for one kind of part.

    ``field`` is the recipe field that names the part (``data.name``), used in
    errors. Registering a name again with another entry is an error unless
    ``replace`` is asked for (a test or a plugin overriding a bundled part).
    """

    def __init__(self, kind: str, field: str) -> None:
        self.kind, self.field = kind, field
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        if name in self._entries and self._entries[name] is not entry and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator(name)``: register the decorated object under ``name``."""

        def wrap(entry: T) -> T:
            return self.add(name, entry)

        return wrap

    def copy(self) -> Registry[T]:
        """A registry with the same entries (a test registers into it, leaving this one)."""
        out: Registry[T] = Registry(self.kind, self.field)
        out._entries = dict(self._entries)
        return out

    def remove(self, name: str) -> None:
        """Forget ``name`` (a test's or plugin's part; bundled parts stay registered)."""
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise NegscaleError(
                f"{self.field}: unknown {self.kind} '{name}' (have: {', '.join(self._entries)})"
            )
        return self._entries[name]

    def get(self, name: str) -> T | None:
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())
