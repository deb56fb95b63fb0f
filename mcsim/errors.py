"""Errors: :class:`ConfigError`, the one-line error every bad input raises (a config value,
a command-line flag, an output directory), naming the key, the value received and what was
expected. A leaf: it imports nothing from mcsim.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range. ``str()`` is one line."""

    def __init__(self, key: str, value: Any, expected: str, *, source: str | None = None):
        self.key, self.value, self.expected, self.source = key, value, expected, source
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if self.value is _MISSING:
            return f"{where}{self.key} is missing: expected {self.expected}"
        return f"{where}{self.key} = {_show(self.value)}: expected {self.expected}"

    def with_source(self, source: str) -> ConfigError:
        return ConfigError(self.key, self.value, self.expected, source=source)

    def renamed(self, key: str) -> ConfigError:
        """The same error naming another key (same value, expected and source): e.g. a
        Python argument's name turned into the command-line flag that set it."""
        return ConfigError(key, self.value, self.expected, source=self.source)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
