"""A tiny name -> factory registry (timm style): register, create, list by pattern."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from nf_dist.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case names to objects (usually factories) of one kind.

    Example:
        >>> ATTACKS: Registry[type] = Registry("attack")
        >>> @ATTACKS.register("ftal")
        ... class FineTuneAll: ...
        >>> ATTACKS.get("ftal").__name__
        'FineTuneAll'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is an error."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry called ``name``, or raise ConfigError suggesting close names."""
        key = name.lower()
        if key not in self._entries:
            close = difflib.get_close_matches(key, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))}"
            )
        return self._entries[key]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (e.g. ``"resnet*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern.lower()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __len__(self) -> int:
        return len(self._entries)
