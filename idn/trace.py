"""Demand traces: request classes whose rates change over time (``deploy/traces/*.yaml``).

A trace is a demand file whose rates are functions of time. It drives ``idn loadgen
--trace`` live (non-homogeneous Poisson arrivals) and ``idn simulate`` offline (one demand
per control period). Pure: no I/O beyond reading the file, no solver.

File format::

    name: flash-crowd
    description: a crowd that moves from edge to edge
    duration_s: 600            # total length of the trace
    period_s: 30               # control period (simulate's default; loadgen's per-period counts)
    interpolation: linear      # default for piecewise rates: linear | step
    constants: {day: 600, peak: 60}      # optional names usable in formulas
    classes:
      # the fields of a demand class (id, ingress, task, max_latency_ms, min_accuracy,
      # payload_bytes: see idn.demand), with `rate` given as one of:
      - {ingress: edge-1, task: digits, rate: 20}                        # constant, req/s
      - {ingress: edge-2, task: digits, rate: [[0, 5], [300, 40], [600, 5]]}   # piecewise [t_s, rate]
      - {ingress: edge-3, task: digits, rate: [[0, 5], [300, 40]], interpolation: step}
      - {ingress: edge-4, task: waveforms, max_latency_ms: 60,
         rate: "10 + 8*sin(2*pi*t/day)"}                                 # a formula of t (seconds)

Piecewise rates hold their first value before the first point and their last value after
the last one; ``linear`` interpolates between points, ``step`` holds each value until the
next point. A rate of 0 means no traffic: the class is left out of the demand at that moment.

**Formulas** are parsed by a small recursive-descent parser (never ``eval``): numbers,
``t`` (seconds since the start), ``pi``, ``e``, the trace's ``constants``, ``+ - * / %``,
``^`` or ``**`` (power, right-associative), parentheses, and the functions ``sin cos exp
log sqrt abs floor min max clip(x, lo, hi) step(x)`` (1 where x >= 0, else 0),
``pulse(x, a, b)`` (1 where a <= x < b) and ``gauss(x, mu, sigma)`` (a bell of height 1).
Every rate is checked on a fine grid over the whole trace: a rate that is negative, NaN
or infinite anywhere is refused with the time where it happens (wrap a formula in
``max(0, ...)`` to clip it).

Every error names the file, the field (``classes[2].rate[1][0]``) and the fix, like every
other loader (:mod:`idn.config`). The class fields are validated by the demand loader
itself, so a trace accepts exactly what a demand file accepts (tasks added to the catalog
later, e.g. ``imagenet``, need nothing new here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from idn.catalog import Catalog
from idn.config import ConfigError, Fields, read_document
from idn.demand import Demand, RequestClass, parse_demand
from idn.topology import Topology

INTERPOLATIONS = ("linear", "step")
MIN_RATE = 1e-9              # below this a class has no traffic (left out of the demand)
CHECK_POINTS = 20001         # grid on which every rate is checked (finite, >= 0)
MAX_FORMULA_CHARS = 2000
MAX_FORMULA_DEPTH = 64
_TRACE_KEYS = {"name", "description", "duration_s", "period_s", "interpolation", "constants", "classes"}
_TRACE_CLASS_KEYS = {"id", "ingress", "task", "rate", "interpolation", "max_latency_ms", "min_accuracy",
                     "payload_bytes"}


# -- formulas ------------------------------------------------------------------------------

Array = np.ndarray
Compiled = Callable[[Array], Array]


class FormulaError(ValueError):
    """A formula does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, column: int):
        self.column = column
        super().__init__(f"{message} at column {column}")


def _gauss(x: Array, mu: Array, sigma: Array) -> Array:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


# name -> (number of arguments, numpy implementation)
FUNCTIONS: dict[str, tuple[int, Callable[..., Array]]] = {
    "sin": (1, np.sin), "cos": (1, np.cos), "exp": (1, np.exp), "log": (1, np.log), "sqrt": (1, np.sqrt),
    "abs": (1, np.abs), "floor": (1, np.floor),
    "min": (2, np.minimum), "max": (2, np.maximum),
    "clip": (3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi)),
    "step": (1, lambda x: (x >= 0).astype(float)),
    "pulse": (3, lambda x, a, b: ((x >= a) & (x < b)).astype(float)),
    "gauss": (3, _gauss),
}
BUILTIN_NAMES = {"t", "pi", "e"}
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
                    r"|(?P<op>\*\*|[-+*/%^(),]))")


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | name | op | end
    text: str
    col: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise FormulaError(f"unexpected character {text[col - 1]!r}", col)
        kind = m.lastgroup or "op"
        out.append(_Tok(kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/'|'%') unary)* ;
    unary := ('-'|'+') unary | power ; power := atom (('^'|'**') unary)? ;
    atom := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'"""

    def __init__(self, text: str, constants: dict[str, float]):
        self.toks = _tokens(text)
        self.i = 0
        self.constants = constants
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise FormulaError(f"expected {text!r}, got {tok.text or 'the end'!r}", tok.col)

    def parse(self) -> Compiled:
        f = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise FormulaError(f"unexpected {tok.text!r}", tok.col)
        return f

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_FORMULA_DEPTH:
            raise FormulaError(f"nested more than {MAX_FORMULA_DEPTH} deep", self.peek().col)

    def expr(self) -> Compiled:
        self._nest()
        f = self.term()
        while self.peek().text in ("+", "-"):
            op = self.take().text
            g = self.term()
            f = (lambda a, b: lambda t: a(t) + b(t))(f, g) if op == "+" else (lambda a, b: lambda t: a(t) - b(t))(f, g)
        self.depth -= 1
        return f

    def term(self) -> Compiled:
        f = self.unary()
        while self.peek().text in ("*", "/", "%"):
            op = self.take().text
            g = self.unary()
            if op == "*":
                f = (lambda a, b: lambda t: a(t) * b(t))(f, g)
            elif op == "/":
                f = (lambda a, b: lambda t: a(t) / b(t))(f, g)
            else:
                f = (lambda a, b: lambda t: np.mod(a(t), b(t)))(f, g)
        return f

    def unary(self) -> Compiled:
        if self.peek().text in ("-", "+"):
            op = self.take().text
            self._nest()
            f = self.unary()
            self.depth -= 1
            return (lambda a: lambda t: -a(t))(f) if op == "-" else f
        return self.power()

    def power(self) -> Compiled:
        base = self.atom()
        if self.peek().text in ("^", "**"):
            self.take()
            self._nest()
            exp = self.unary()  # right-associative: 2^3^2 = 2^(3^2)
            self.depth -= 1
            return (lambda a, b: lambda t: np.power(a(t), b(t)))(base, exp)
        return base

    def atom(self) -> Compiled:
        tok = self.take()
        if tok.kind == "num":
            v = float(tok.text)
            return lambda t: np.full_like(t, v, dtype=float)
        if tok.text == "(":
            f = self.expr()
            self.expect(")")
            return f
        if tok.kind == "name":
            name = tok.text
            if self.peek().text == "(":
                if name not in FUNCTIONS:
                    raise FormulaError(f"unknown function {name!r} (use one of {', '.join(sorted(FUNCTIONS))})",
                                       tok.col)
                self.take()
                args = [self.expr()]
                while self.peek().text == ",":
                    self.take()
                    args.append(self.expr())
                self.expect(")")
                arity, fn = FUNCTIONS[name]
                if len(args) != arity:
                    raise FormulaError(f"{name}() takes {arity} argument(s), got {len(args)}", tok.col)
                return (lambda fn, args: lambda t: fn(*(a(t) for a in args)))(fn, args)
            if name == "t":
                return lambda t: np.asarray(t, dtype=float)
            if name in ("pi", "e") and name not in self.constants:
                v = math.pi if name == "pi" else math.e
                return lambda t: np.full_like(t, v, dtype=float)
            if name in self.constants:
                c = self.constants[name]
                return lambda t: np.full_like(t, c, dtype=float)
            if name in FUNCTIONS:
                raise FormulaError(f"{name} is a function: call it as {name}(...)", tok.col)
            known = sorted(BUILTIN_NAMES | set(self.constants))
            raise FormulaError(f"unknown name {name!r} (known: {', '.join(known)})", tok.col)
        raise FormulaError(f"unexpected {tok.text or 'end of formula'!r}", tok.col)


def compile_formula(text: str, constants: dict[str, float] | None = None) -> Compiled:
    """A formula of ``t`` as a vectorised function (array of seconds -> array of rates)."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"longer than {MAX_FORMULA_CHARS} characters", MAX_FORMULA_CHARS)
    return _Parser(text, dict(constants or {})).parse()


# -- rates over time -----------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """A class's rate over time (req/s): a constant, piecewise points, or a formula."""
    kind: str                       # constant | piecewise | formula
    points: tuple[tuple[float, float], ...] = ()   # constant: ((0, r),); piecewise: the [t, rate] points
    interpolation: str = "linear"
    formula: str | None = None
    _fn: Compiled | None = None     # the compiled formula

    def at(self, t: Array | float) -> Array:
        """Rate at time(s) ``t`` (seconds from the start)."""
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        if self.kind == "formula":
            assert self._fn is not None
            with np.errstate(all="ignore"):
                return np.broadcast_to(self._fn(ts), ts.shape).astype(float)
        xs = np.array([p[0] for p in self.points])
        ys = np.array([p[1] for p in self.points])
        if self.kind == "constant" or len(xs) == 1:
            return np.full(ts.shape, ys[0])
        if self.interpolation == "linear":
            return np.interp(ts, xs, ys)
        idx = np.clip(np.searchsorted(xs, ts, side="right") - 1, 0, len(xs) - 1)
        return ys[idx]

    def breakpoints(self) -> list[float]:
        return [p[0] for p in self.points] if self.kind == "piecewise" else []

    def describe(self) -> str:
        if self.kind == "formula":
            return str(self.formula)
        if self.kind == "constant":
            return f"{self.points[0][1]:g}"
        return f"{len(self.points)} points ({self.interpolation})"


def cumulative(rate: Rate, grid: Array) -> Array:
    """Expected arrivals from 0 to each time of ``grid`` (times >= 0, sorted): exact for constant
    and piecewise rates (integrated between breakpoints), trapezoid on a fine grid for formulas."""
    grid = np.asarray(grid, dtype=float)
    if rate.kind == "formula":  # trapezoid on a fine grid from 0 (plus the asked times)
        hi = float(grid.max()) if grid.size else 0.0
        fine = np.union1d(np.linspace(0.0, hi, CHECK_POINTS), grid)
        r = rate.at(fine)
        lam = np.concatenate([[0.0], np.cumsum(0.5 * (r[1:] + r[:-1]) * np.diff(fine))])
        return np.interp(grid, fine, lam)
    xs = np.array([0.0] + [b for b in rate.breakpoints() if b > 0])
    # piecewise integral: knots = breakpoints and grid points; exact for linear and step
    knots = np.union1d(xs, grid)
    if rate.kind == "piecewise" and rate.interpolation == "step":
        r_left = rate.at(knots[:-1])  # value held on [knot_i, knot_{i+1})
        seg = r_left * np.diff(knots)
    else:
        r = rate.at(knots)
        seg = 0.5 * (r[1:] + r[:-1]) * np.diff(knots)
    lam = np.concatenate([[0.0], np.cumsum(seg)])
    return np.interp(grid, knots, lam)


# -- the trace -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceClass:
    cls: RequestClass   # its rate field is the class's mean rate over the trace
    rate: Rate


@dataclass(frozen=True)
class Period:
    index: int
    start_s: float
    end_s: float
    demand: Demand      # mean rates over [start, end); classes without traffic left out

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Trace:
    classes: tuple[TraceClass, ...]
    duration_s: float
    period_s: float
    name: str = ""
    description: str = ""
    file: str | None = None

    def rates_at(self, t: float) -> Array:
        """Every class's rate at time ``t`` (in class order)."""
        return np.array([float(tc.rate.at(t)[0]) for tc in self.classes])

    def demand_of(self, rates: Array | list[float], where: str) -> Demand:
        """A Demand with these rates (classes at 0 left out)."""
        cls = tuple(replace(tc.cls, rate=float(r)) for tc, r in zip(self.classes, rates) if r > MIN_RATE)
        return Demand(cls, file=f"{self.file or '<trace>'}@{where}")

    def demand_at(self, t: float) -> Demand:
        """The demand at one moment: every class at its instantaneous rate."""
        return self.demand_of(self.rates_at(t), f"t={t:g}s")

    def expected_counts(self, edges: Array) -> Array:
        """[classes, len(edges)-1]: expected arrivals of each class between consecutive times."""
        edges = np.asarray(edges, dtype=float)
        return np.array([np.diff(cumulative(tc.rate, edges)) for tc in self.classes]).reshape(
            len(self.classes), len(edges) - 1)

    def period_edges(self, period_s: float | None = None) -> Array:
        p = period_s or self.period_s
        n = max(1, math.ceil(self.duration_s / p - 1e-9))
        return np.minimum(np.arange(n + 1) * p, self.duration_s)

    def periods(self, period_s: float | None = None) -> list[Period]:
        """The trace cut into control periods (the last may be shorter), each with its mean demand."""
        edges = self.period_edges(period_s)
        counts = self.expected_counts(edges)
        out = []
        for k in range(len(edges) - 1):
            a, b = float(edges[k]), float(edges[k + 1])
            out.append(Period(k, a, b, self.demand_of(counts[:, k] / (b - a), f"[{a:g},{b:g})s")))
        return out

    def max_rates(self) -> Array:
        """Each class's largest rate over the trace (checked on the validation grid)."""
        grid = self._grid()
        return np.array([float(np.max(tc.rate.at(grid))) for tc in self.classes])

    def _grid(self) -> Array:
        bps = sorted({b for tc in self.classes for b in tc.rate.breakpoints() if 0 <= b <= self.duration_s})
        return np.union1d(np.linspace(0.0, self.duration_s, CHECK_POINTS), bps)


# -- loading -------------------------------------------------------------------------------

def _finite(f: Fields, key: str, value: float, what: str) -> float:
    if not math.isfinite(value):
        raise f.error(key, f"{what} must be a finite number, got {value}", "write a plain number (no .nan / .inf)")
    return value


def _rate(f: Fields, default_interp: str, constants: dict[str, float], duration: float) -> Rate:
    raw = f.data.get("rate")
    where = f.path("rate")
    if raw is None:
        raise f.error("rate", "missing required field",
                      "add `rate:` as a number, a list of [t_s, rate] points, or a formula string of t")
    interp = f.opt("interpolation", str, default_interp)
    if interp not in INTERPOLATIONS:
        raise f.error("interpolation", f"unknown interpolation {interp!r}", f"use one of {', '.join(INTERPOLATIONS)}")
    if isinstance(raw, bool):
        raise f.error("rate", f"expected a number, points or a formula, got {raw!r}")
    if isinstance(raw, (int, float)):
        r = _finite(f, "rate", float(raw), "a rate")
        if r < 0:
            raise f.error("rate", f"must be >= 0, got {r}", "rates are requests per second")
        return Rate("constant", ((0.0, r),), interp)
    if isinstance(raw, str):
        try:
            fn = compile_formula(raw, constants)
        except FormulaError as e:
            raise ConfigError(f.file, where, f"formula {raw!r}: {e}",
                              "use numbers, t, pi, e, constants, + - * / % ^, parentheses and "
                              f"{', '.join(sorted(FUNCTIONS))}") from None
        return Rate("formula", (), interp, raw, fn)
    if isinstance(raw, list):
        if not raw:
            raise f.error("rate", "no points", "give at least one [t_s, rate] point")
        pts: list[tuple[float, float]] = []
        for i, p in enumerate(raw):
            pw = f"{where}[{i}]"
            if (not isinstance(p, list) or len(p) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p)):
                raise ConfigError(f.file, pw, f"expected a [t_s, rate] pair of numbers, got {p!r}",
                                  "write each point as [seconds, requests per second]")
            t, r = float(p[0]), float(p[1])
            if not math.isfinite(t):
                raise ConfigError(f.file, f"{pw}[0]", f"time must be finite, got {t}", "write a plain number")
            if not math.isfinite(r):
                raise ConfigError(f.file, f"{pw}[1]", f"rate must be finite, got {r}", "write a plain number")
            if t < 0 or t > duration:
                raise ConfigError(f.file, f"{pw}[0]", f"time {t:g} is outside the trace [0, {duration:g}] s",
                                  "keep every point within duration_s")
            if pts and t <= pts[-1][0]:
                raise ConfigError(f.file, f"{pw}[0]", f"time {t:g} does not increase (previous {pts[-1][0]:g})",
                                  "list the points in increasing time, one per time")
            if r < 0:
                raise ConfigError(f.file, f"{pw}[1]", f"rate must be >= 0, got {r:g}", "rates are requests per second")
            pts.append((t, r))
        return Rate("piecewise", tuple(pts), interp)
    raise f.error("rate", f"expected a number, a list of [t_s, rate] points or a formula string, got {raw!r}")


def _check_values(f: Fields, rate: Rate, grid: Array) -> None:
    """Refuse a rate that is NaN, infinite or negative anywhere on the trace."""
    if rate.kind != "formula":
        return
    r = rate.at(grid)
    bad = np.nonzero(~np.isfinite(r))[0]
    if len(bad):
        t = grid[bad[0]]
        raise f.error("rate", f"formula {rate.formula!r} is not finite ({r[bad[0]]}) at t={t:g}s",
                      "keep arguments of log/sqrt/division in range over the whole trace")
    neg = np.nonzero(r < 0)[0]
    if len(neg):
        t = grid[neg[0]]
        raise f.error("rate", f"formula {rate.formula!r} is negative ({r[neg[0]]:.4g}) at t={t:g}s",
                      "wrap it in max(0, ...) or raise its base rate")


def parse_trace(doc: Any, file: str | Path | None, topology: Topology, catalog: Catalog) -> Trace:
    """Validate a trace document against the topology (ingress nodes) and catalog (tasks)."""
    root = Fields(doc, file, "")
    root.check_keys(_TRACE_KEYS)
    duration = _finite(root, "duration_s", root.positive("duration_s"), "duration_s")
    period = _finite(root, "period_s", root.positive("period_s"), "period_s")
    if period > duration:
        raise root.error("period_s", f"period {period:g} s is longer than the trace ({duration:g} s)",
                         "make period_s <= duration_s")
    interp = root.opt("interpolation", str, "linear")
    if interp not in INTERPOLATIONS:
        raise root.error("interpolation", f"unknown interpolation {interp!r}",
                         f"use one of {', '.join(INTERPOLATIONS)}")
    constants: dict[str, float] = {}
    cf = root.sub("constants", required=False)
    for k in cf.data:
        name = str(k)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", name) or name in FUNCTIONS or name == "t":
            raise cf.error(name, "not a usable constant name",
                           "use a letter-led name that is not t or a function name")
        v = cf.req(name, float)
        constants[name] = _finite(cf, name, v, "a constant")
    raw = root.req("classes", list)
    if not raw:
        raise root.error("classes", "no request classes", "add at least one {ingress, task, rate}")
    rates: list[Rate] = []
    shells: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        f = Fields(item, file, f"classes[{i}]")
        f.check_keys(_TRACE_CLASS_KEYS)
        rates.append(_rate(f, interp, constants, duration))
        shells.append({k: v for k, v in f.data.items() if k not in ("rate", "interpolation")} | {"rate": 1.0})
    # the class fields (ingress, task, SLO, payload, id) are validated by the demand loader itself
    base = parse_demand({"classes": shells}, file, topology, catalog)
    trace = Trace(tuple(TraceClass(c, r) for c, r in zip(base.classes, rates)), duration, period,
                  root.opt("name", str, Path(file).stem if file is not None else ""),
                  root.opt("description", str, ""), str(file) if file is not None else None)
    grid = trace._grid()
    for i, tc in enumerate(trace.classes):
        _check_values(Fields(raw[i], file, f"classes[{i}]"), tc.rate, grid)
    means = trace.expected_counts(np.array([0.0, duration]))[:, 0] / duration
    if not np.any(means > MIN_RATE):
        raise root.error("classes", "no class has any traffic over the trace", "give some class a rate above 0")
    return replace(trace, classes=tuple(replace(tc, cls=replace(tc.cls, rate=float(m)))
                                        for tc, m in zip(trace.classes, means)))


def load_trace(path: str | Path, topology: Topology, catalog: Catalog) -> Trace:
    """Load and validate a trace YAML/JSON file."""
    return parse_trace(read_document(path), path, topology, catalog)
