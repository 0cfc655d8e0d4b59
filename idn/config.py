"""Reading the YAML/JSON files users write, with errors that say where and how to fix.

Every loader in the domain layer (catalog, topology, demand, plan) reads its file
through these helpers so that a mistake is reported as
``<file>: <field>: <what is wrong> (fix: <what to do>)`` instead of a KeyError
deep inside the solver or the node.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

# libyaml's parser when PyYAML was built with it (9x faster on the zoo's catalog), the same safe subset.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

T = TypeVar("T")
D = TypeVar("D")
N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A user-written file is wrong. Names the file, the field and the fix."""

    def __init__(self, file: str | Path | None, field: str, problem: str, fix: str | None = None):
        self.file = str(file) if file is not None else "<input>"
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{self.file}: {field}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but its errors read better as JSON)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, "<file>", "file not found", "check the path") from None
    except IsADirectoryError:
        raise ConfigError(p, "<file>", "is a folder, not a file", "give the path of the file") from None
    except OSError as e:
        raise ConfigError(p, "<file>", f"cannot read: {e.strerror}", "check the path and its permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(p, "<file>", f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}, line {line})",
                          "save the file as UTF-8") from None
    kind = "JSON" if p.suffix == ".json" else "YAML"
    try:
        if p.suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506  # a safe loader (C or Python)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(p, "<file>", f"not valid {kind}: {' '.join(str(e).split())}",
                          f"fix the {kind} syntax at the position shown") from None
    except (ValueError, RecursionError) as e:  # e.g. JSON's NaN/Infinity spellings, absurd nesting
        raise ConfigError(p, "<file>", f"not valid {kind}: {e}",
                          f"write plain {kind} (numbers, not NaN or Infinity)") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
               list: "a list", dict: "a mapping"}

INT64_MAX = 2**63 - 1  # what protobuf's int64 fields (plan versions, counters) can carry

# Ids that become file names (logs, state folders), command-line arguments and URL parts:
# letters, digits, '_', '.', '-', not starting with '.' or '-', at most 128 characters.
_SAFE_ID = re.compile(r"[^\W][\w.-]{0,127}")
SAFE_ID_RULE = "letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters"


def safe_id(value: str) -> bool:
    """True when ``value`` can name a file and an argument as it is (see ``SAFE_ID_RULE``)."""
    return bool(_SAFE_ID.fullmatch(value)) and value.isprintable()


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Fields:
    """Typed access to one mapping of a document, remembering where it sits.

    ``Fields(doc, file, "nodes[2]").req("mem_mb", float)`` raises a ConfigError naming
    ``nodes[2].mem_mb`` when the key is missing or has the wrong type.
    """

    def __init__(self, data: Any, file: str | Path | None, where: str):
        if not isinstance(data, Mapping):
            raise ConfigError(file, where or "<root>", f"expected a mapping, got {type(data).__name__}",
                              "write `key: value` lines here" + ("" if where else " (is the file empty?)"))
        self.data = data
        self.file = file
        self.where = where

    def path(self, key: str | int) -> str:
        return f"{self.where}.{key}" if self.where else str(key)

    def error(self, key: str | int, problem: str, fix: str | None = None) -> ConfigError:
        return ConfigError(self.file, self.path(key), problem, fix)

    def req(self, key: str, typ: type[T], fix: str | None = None) -> T:
        if key not in self.data:
            raise self.error(key, "missing required field", fix or f"add `{key}: <{typ.__name__}>`")
        return self._typed(key, self.data[key], typ)

    def opt(self, key: str, typ: type[T], default: D) -> T | D:
        """The field's value checked against ``typ``, or ``default`` (of any type, e.g. None) when absent."""
        if key not in self.data or self.data[key] is None:
            return default
        return self._typed(key, self.data[key], typ)

    def sub(self, key: str | int, required: bool = True) -> Fields:
        if key not in self.data:
            if required:
                raise self.error(key, "missing required section", f"add a `{key}:` mapping")
            return Fields({}, self.file, self.path(key))
        return Fields(self.data[key], self.file, self.path(key))

    def positive(self, key: str,
                 typ: type[N] = float,  # type: ignore[assignment]  # a constrained TypeVar's default
                 default: N | None = None, allow_zero: bool = False, maximum: float | None = None) -> N:
        """A number > 0 (>= 0 with ``allow_zero``), at most ``maximum`` (sizes beyond any real system
        only make the solver's numbers ill-conditioned)."""
        v = self.req(key, typ) if default is None else self.opt(key, typ, default)
        if v < 0 or (v == 0 and not allow_zero):
            raise self.error(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}",
                             f"write a number {'>= 0' if allow_zero else '> 0'}")
        if maximum is not None and v > maximum:
            raise self.error(key, f"must be <= {maximum:g}, got {v:g}", "check the unit of this field")
        return v

    def ident(self, key: str, what: str = "id") -> str:
        """A required id that is safe as a file name and an argument (``SAFE_ID_RULE``)."""
        v = self.req(key, str)
        if not safe_id(v):
            raise self.error(key, f"{what} {v!r} is not allowed" if v else f"empty {what}",
                             f"use {SAFE_ID_RULE}")
        return v

    def check_keys(self, allowed: set[str]) -> None:
        """Unknown keys are typos more often than not: refuse them."""
        for k in self.data:
            if k not in allowed:
                raise self.error(str(k), "unknown field", f"use one of: {', '.join(sorted(allowed))}")

    def _typed(self, key: str, value: Any, typ: type[T]) -> T:
        """``value`` as ``typ``; numbers must be finite (NaN and infinity never mean anything here)
        and integers must fit in 64 bits (what the wire formats carry)."""
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 1e300:
                raise self.error(key, f"number out of range: {value}", "write a plain number")
            return float(value)  # type: ignore[return-value]  # typ is float, so T is float
        if typ in (int, float) and isinstance(value, bool):
            raise self.error(key, f"expected {_TYPE_NAMES[typ]}, got {value!r}", f"write {_TYPE_NAMES[typ]}")
        if typ is int and isinstance(value, float) and value.is_integer() and math.isfinite(value):
            raise self.error(key, f"expected {_TYPE_NAMES[int]}, got {value!r}", f"write {int(value)}")
        if not isinstance(value, typ):
            raise self.error(key, f"expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {value!r}",
                             f"write {_TYPE_NAMES.get(typ, typ.__name__)}")
        if typ is float and not math.isfinite(value):  # type: ignore[arg-type]  # typ is float: value is one
            raise self.error(key, f"must be a finite number, got {value!r}", "write a plain number")
        if typ is int and not -INT64_MAX - 1 <= value <= INT64_MAX:  # type: ignore[operator]  # an int here
            raise self.error(key, f"integer out of range (64 bits): {value}", "write a smaller integer")
        return value
