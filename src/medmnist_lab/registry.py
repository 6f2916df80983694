"""A tiny generic registry: one per kind of thing (models, recipes, policies, GANs, datasets).

Registering a duplicate name is a programming error (raises at import); looking up an unknown
name is a user error (lists the valid names and suggests the closest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medmnist_lab.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, item: T, aliases: tuple[str, ...] = ()) -> T:
        key = name.lower()
        if key in self._items or key in self._aliases:
            raise ValueError(f"duplicate {self.kind} name '{name}'")
        self._items[key] = item
        for alias in aliases:
            if alias.lower() in self._items or alias.lower() in self._aliases:
                raise ValueError(f"duplicate {self.kind} alias '{alias}'")
            self._aliases[alias.lower()] = key
        return item

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form: `@MODELS.register("resnet18")`."""

        def deco(item: T) -> T:
            return self.add(name, item, aliases)

        return deco

    def canonical(self, name: str) -> str:
        """The registered name for `name` (case-insensitive, aliases resolved)."""
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise unknown_name(self.kind, name, self._items)
        return key

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def is_alias(self, name: str) -> bool:
        return name.lower() in self._aliases

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
