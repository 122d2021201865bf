"""What a config value may be: the checks the schema in ``config_validation`` is written with.

Each check says what it accepts (``expected``, the words of the error message) and, for a value
it refuses, what is wrong (``problem``). No heavy imports: they run before anything loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def format_value(value) -> str:
    """A value as it is written on the command line: ``[16,5]``, ``null``, ``true``, ``{video: 0.001}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _in_range(value, low, high, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return high is None or not (value > high or (high_open and value == high))


class Check:
    """Base: ``accepts(value)``, the text ``expected`` of what it accepts, and a ``hint`` of what to
    do (None: the schema says it, e.g. with the default)."""

    expected = "anything"
    hint: str | None = None

    def accepts(self, value) -> bool:
        return True

    def problem(self, value) -> str | None:
        """What is wrong with ``value``, or None when it is accepted."""
        return None if self.accepts(value) else f"must be {self.expected}"


@dataclass(frozen=True)
class Integer(Check):
    low: int | None = None
    high: int | None = None

    @property
    def expected(self) -> str:
        return "an integer" + _range_text(self.low, self.high)

    def accepts(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, self.low, self.high, False, False)


@dataclass(frozen=True)
class Number(Check):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def expected(self) -> str:
        return "a number" + _range_text(self.low, self.high, self.low_open, self.high_open)

    def accepts(self, value) -> bool:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and _in_range(value, self.low, self.high, self.low_open, self.high_open))


class Boolean(Check):
    expected = "true or false"

    def accepts(self, value) -> bool:
        return isinstance(value, bool)


class Text(Check):
    expected = "a string"

    def accepts(self, value) -> bool:
        return isinstance(value, str)


class OneOf(Check):
    def __init__(self, *choices) -> None:
        self.choices = choices

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(format_value(c) for c in self.choices)

    def accepts(self, value) -> bool:
        # type too: true is not 1, and 1 is not "1"
        return any(value == choice and type(value) is type(choice) for choice in self.choices)


@dataclass(frozen=True)
class Pattern(Check):
    regex: str
    description: str

    @property
    def expected(self) -> str:
        return self.description

    def accepts(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class ListOf(Check):
    item: Check = Check()
    min_length: int = 0
    length: int | None = None

    @property
    def expected(self) -> str:
        size = f"{self.length} " if self.length is not None else ("1 or more " if self.min_length == 1 else "")
        return f"a list of {size}items" + ("" if type(self.item) is Check else f" ({self.item.expected} each)")

    def accepts(self, value) -> bool:
        return (isinstance(value, list) and len(value) >= self.min_length
                and (self.length is None or len(value) == self.length) and all(self.item.accepts(v) for v in value))


@dataclass(frozen=True)
class MappingOf(Check):
    keys: tuple[str, ...] | None = None
    value: Check = Check()

    @property
    def expected(self) -> str:
        keys = f" with keys among {', '.join(self.keys)}" if self.keys else ""
        return f"a mapping{keys}" + ("" if type(self.value) is Check else f" ({self.value.expected} each)")

    def accepts(self, value) -> bool:
        return (isinstance(value, dict) and (self.keys is None or set(value) <= set(self.keys))
                and all(self.value.accepts(v) for v in value.values()))


class AnyOf(Check):
    """Any of ``checks``; ``described``: the words for what they accept, where listing them reads badly."""

    def __init__(self, *checks: Check, described: str | None = None) -> None:
        self.checks, self.described = checks, described

    @property
    def expected(self) -> str:
        return self.described or ", or ".join(check.expected for check in self.checks)

    @property
    def hint(self) -> str | None:
        return next((check.hint for check in self.checks if check.hint), None)

    def accepts(self, value) -> bool:
        return any(check.accepts(value) for check in self.checks)

    def problem(self, value) -> str | None:
        """A string where a path is among the choices is told the path's problem ("does not
        exist"): it is far likelier a mistyped path than a mistyped keyword."""
        if self.accepts(value):
            return None
        paths = [check for check in self.checks if isinstance(check, ExistingPath)]
        return paths[0].problem(value) if paths and isinstance(value, str) else f"must be {self.expected}"


class Null(Check):
    expected = "null"

    def accepts(self, value) -> bool:
        return value is None


def nullable(check: Check) -> Check:
    """``check`` or null (one level: a nullable AnyOf keeps its checks side by side)."""
    if isinstance(check, AnyOf):
        return AnyOf(*check.checks, Null(), described=check.described and f"{check.described}, or null")
    return AnyOf(check, Null())


@dataclass(frozen=True)
class ExistingPath(Check):
    """A path that exists: a file (``kind="file"``), a folder (``"dir"``) or either (``"path"``)."""

    kind: str = "path"
    hint = "check the path (a relative one starts from the working directory)"

    @property
    def expected(self) -> str:
        return {"file": "an existing file", "dir": "an existing folder"}.get(self.kind, "an existing path")

    def accepts(self, value) -> bool:
        if not isinstance(value, str):
            return False
        path = Path(value).expanduser()
        return {"file": path.is_file, "dir": path.is_dir}.get(self.kind, path.exists)()

    def problem(self, value) -> str | None:
        if self.accepts(value):
            return None
        if isinstance(value, str) and Path(value).expanduser().exists():
            return f"is not {'a file' if self.kind == 'file' else 'a folder'}"
        return "does not exist" if isinstance(value, str) else f"must be {self.expected}"
