"""A small validated name registry, one per extension point (datasets, tasks, generators).

Names are lower-case slugs (letters, digits, ``.``, ``_``, ``-``), registered once. Asking for
an unknown name raises :class:`UnknownNameError`, whose message lists the valid names; the CLI
prints it as one line and exits 2. A registry may also discover plugins from a Python
entry-point group, so third-party packages can add generators without touching this code.
A plugin that fails to load (an import error, a failed check) is left out, logged once, and
asking for it by name raises :class:`PluginLoadError` saying why; the other plugins are not
affected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class UnknownNameError(KeyError):
    """An unknown name was asked of a registry."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class PluginLoadError(UnknownNameError):
    """A name whose entry-point plugin exists but failed to load."""

    def __init__(self, kind: str, name: str, reason: str):
        self.kind, self.name, self.valid = kind, name, []
        KeyError.__init__(self, f"{kind} {name!r} is installed but failed to load: {reason}")


class Registry(Generic[T]):
    """Maps validated names to objects of one kind.

    Args:
        kind: what is registered ("task", "dataset", "method"), used in messages.
        entry_point_group: optional entry-point group whose entries are loaded lazily.
        check: optional callable that validates an object on registration (raises).
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_point_group: str | None = None,
        check: Callable[[str, T], None] | None = None,
    ):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._group = entry_point_group
        self._check = check
        self._discovered = entry_point_group is None
        self._broken: dict[str, str] = {}

    def register(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"invalid {self.kind} name {name!r}: use lower-case letters, digits, '.', '_', '-'"
            )
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if self._check is not None:
            self._check(name, obj)
        self._items[name] = obj
        return obj

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in entry_points(group=self._group):
            if ep.name in self._items:
                continue
            try:
                self.register(ep.name, ep.load())
            except Exception as err:  # one broken plugin must not hide the others
                reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
                self._broken[ep.name] = f"{ep.value}: {reason}"
                log.warning("%s plugin %r (%s) failed to load and is left out: %s", self.kind,
                            ep.name, ep.value, reason)

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            if name in self._broken:
                raise PluginLoadError(self.kind, name, self._broken[name]) from None
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._discover()
        for name in sorted(self._items):
            yield name, self._items[name]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items
