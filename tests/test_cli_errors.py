"""Bad files and bad options end in one clean line, never a traceback, from every command that reads them.

The matrix: every kind of broken document (topology, catalog, demand, plan) against every
command that reads that kind. Each pair must be *refused cleanly*: exit status 1 or 2,
the broken file named as ``<file>: <field>: <problem> (fix: ...)``, no traceback and no
"internal error". *Accepted* (the command got past its inputs: to the network, to the
node server, or to exit 0) and *traceback* are both failures. Commands never reach a
network here: what they would call next is replaced by a stub that raises ``Reached``.

A property test then breaks random fields of valid documents with random values and
checks that no command ever answers with a traceback (a mutation may be valid: then the
command accepts it, and that is fine).
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from idn.catalog import DEFAULT_CATALOG
from idn.cli import app
from idn.placement.synthetic import tree_instance
from tests.test_solver_honesty import _broken, _write

ROOT = Path(__file__).resolve().parent.parent
MODELS = DEFAULT_CATALOG.parent
NAN, INF = math.nan, math.inf


@pytest.fixture(autouse=True, scope="module")
def _built_once():
    """Typer rebuilds the click command on every CliRunner.invoke (~0.1 s); build it once here."""
    import typer.testing

    mp = pytest.MonkeyPatch()
    mp.setattr(typer.testing, "_get_command", lru_cache(maxsize=4)(typer.testing._get_command))
    yield
    mp.undo()


class Reached(Exception):
    """A stub in place of the network / the node server: the command accepted its inputs."""


# -- valid documents -------------------------------------------------------------------------

def topology_doc() -> dict[str, Any]:
    return {"hardware_class": "cpu-x86_64-2c", "nodes": [
        {"id": "cloud", "tier": "cloud", "address": "127.0.0.1:1", "mem_mb": 4096, "cores": 4, "repository": True},
        {"id": "regional", "tier": "regional", "address": "127.0.0.1:2", "mem_mb": 512, "cores": 2,
         "parent": "cloud", "slowdown": 1.5},
        {"id": "edge", "tier": "edge", "address": "127.0.0.1:3", "mem_mb": 2, "cores": 1, "parent": "regional",
         "slowdown": 3.0}],
        "links": [{"a": "regional", "b": "cloud", "delay_ms": 20, "bandwidth_mbps": 1000},
                  {"a": "edge", "b": "regional", "delay_ms": 5}]}


@lru_cache(maxsize=1)
def _zoo() -> dict[str, Any]:
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    for task in doc["tasks"].values():  # absolute paths: the copies live in a temporary folder
        task["samples"] = str(MODELS / task["samples"])
        # three variants per task: every rule is exercised, and each command reads less
        task["variants"] = dict(list(task["variants"].items())[:3])
        for v in task["variants"].values():
            v["file"] = str(MODELS / v["file"])
    assert "digits-mlp-s" in doc["tasks"]["digits"]["variants"]
    return doc


def catalog_doc() -> dict[str, Any]:
    return copy.deepcopy(_zoo())


def demand_doc() -> dict[str, Any]:
    return {"classes": [{"ingress": "edge", "task": "digits", "rate": 20},
                        {"ingress": "edge", "task": "waveforms", "rate": 5, "max_latency_ms": 120},
                        {"ingress": "regional", "task": "digits", "rate": 10, "min_accuracy": 0.85}]}


@lru_cache(maxsize=1)
def _plan() -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="idn-plan-"))
    for name, doc in (("topology", topology_doc()), ("catalog", catalog_doc()), ("demand", demand_doc())):
        (d / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["solve", "--topology", str(d / "topology.yaml"), "--catalog",
                                 str(d / "catalog.yaml"), "--demand", str(d / "demand.yaml"), "-o",
                                 str(d / "plan.yaml")])
    assert r.exit_code == 0, r.output
    return yaml.safe_load((d / "plan.yaml").read_text())


# -- broken documents: (name, mutate(doc) -> doc | bytes, the commands it concerns: None = every reader) --
# A missing or changed ONNX file concerns only the commands that load models; a hardware class
# the catalog never profiled, only those that predict latencies (the solver, and the nodes).
ONNX = {"up", "up --plan", "apply", "control", "loadgen", "node", "node --plan", "infer", "models list"}
PREDICT = {"solve", "up", "apply", "control", "node"}

def _set(path: str, value: Any) -> Callable[[Any], Any]:
    """Set ``a.b[2].c`` to ``value``."""
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]

    def mutate(doc: Any) -> Any:
        x = doc
        for k in keys[:-1]:
            x = x[k]
        x[keys[-1]] = value
        return doc
    return mutate


def _del(path: str) -> Callable[[Any], Any]:
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]

    def mutate(doc: Any) -> Any:
        x = doc
        for k in keys[:-1]:
            x = x[k]
        del x[keys[-1]]
        return doc
    return mutate


def _do(*fs: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def mutate(doc: Any) -> Any:
        for f in fs:
            doc = f(doc)
        return doc
    return mutate


NOT_UTF8 = lambda doc: b"nodes: [\xff\xfe]\nclasses: \xe9\n"  # noqa: E731
NOT_YAML = lambda doc: b"nodes: [\n  {id: a,\n"  # noqa: E731
A_LIST = lambda doc: [1, 2, 3]  # noqa: E731
EMPTY = lambda doc: b""  # noqa: E731
COMMON = [("not UTF-8", NOT_UTF8, None), ("not YAML", NOT_YAML, None), ("a list", A_LIST, None),
          ("empty file", EMPTY, None)]

V = "tasks.digits.variants.digits-mlp-s"  # among the three kept
BAD: dict[str, list[tuple[str, Callable[[Any], Any], set[str] | None]]] = {
    "topology": COMMON + [
        ("mem_mb NaN", _set("nodes[1].mem_mb", NAN), None),
        ("cores inf", _set("nodes[1].cores", INF), None),
        ("hop_overhead_ms NaN", _set("hop_overhead_ms", NAN), None),
        ("overhead_ms -inf", _set("overhead_ms", -INF), None),
        ("slowdown NaN", _set("nodes[2].slowdown", NAN), None),
        ("price negative", _set("nodes[0].price", -1), None),
        ("delay NaN", _set("links[0].delay_ms", NAN), None),
        ("bandwidth inf", _set("links[0].bandwidth_mbps", INF), None),
        ("bandwidth 0", _set("links[0].bandwidth_mbps", 0), None),
        ("parent cycle", _do(_set("nodes[1].parent", "edge")), None),
        ("empty id", _set("nodes[2].id", ""), None),
        ("id with /", _set("nodes[2].id", "edge/1"), None),
        ("id ..", _set("nodes[2].id", ".."), None),
        ("id with space", _set("nodes[2].id", "edge 1"), None),
        ("duplicate id", _set("nodes[2].id", "regional"), None),
        ("unknown tier", _set("nodes[2].tier", "fog"), None),
        ("address not host:port", _set("nodes[2].address", "nonsense"), None),
        ("port 70000", _set("nodes[2].address", "127.0.0.1:70000"), None),
        ("mem_mb a word", _set("nodes[1].mem_mb", "lots"), None),
        ("cores a boolean", _set("nodes[1].cores", True), None),
        ("mem_mb 10^400", _set("nodes[1].mem_mb", 10 ** 400), None),
        ("no nodes", _del("nodes"), None),
        ("nodes empty", _set("nodes", []), None),
        ("no repository", _set("nodes[0].repository", False), None),
        ("link to unknown node", _set("links[1].a", "nowhere"), None),
        ("unknown field", _set("nodes[1].memory", 5), None),
        ("disconnected node", _del("links[1]"), None),
        ("empty hardware_class", _set("hardware_class", ""), None),
        ("unprofiled hardware_class", _set("hardware_class", "tpu-v9"), PREDICT),
    ],
    "catalog": COMMON + [
        ("no tasks", _set("tasks", {}), None),
        ("top1 NaN", _set(f"{V}.accuracy.top1", NAN), None),
        ("top1 1.5", _set(f"{V}.accuracy.top1", 1.5), None),
        ("p50 NaN", _set(f"{V}.latency.cpu-x86_64-2c.single_thread.1.p50_ms", NAN), None),
        ("p95 negative", _set(f"{V}.latency.cpu-x86_64-2c.single_thread.1.p95_ms", -1), None),
        ("bytes negative", _set(f"{V}.bytes", -5), None),
        ("bytes 2^64", _set(f"{V}.bytes", 2 ** 64), None),
        ("flops NaN", _set(f"{V}.flops_per_sample", NAN), None),
        ("unknown datatype", _set("tasks.digits.inputs[0].datatype", "FP7"), None),
        ("shape with a word", _set("tasks.digits.inputs[0].shape", [-1, "x"]), None),
        ("shape with a boolean", _set("tasks.digits.inputs[0].shape", [-1, True]), None),
        ("variant name with /", lambda d: (d["tasks"]["digits"]["variants"].update(
            {"mlp/s": d["tasks"]["digits"]["variants"].pop("digits-mlp-s")}) or d), None),
        ("task without variants", _set("tasks.digits.variants", {}), None),
        ("model file missing", _set(f"{V}.file", str(MODELS / "digits" / "missing.onnx")), ONNX),
        ("sha256 mismatch", _set(f"{V}.sha256", "0" * 64), ONNX),
    ],
    "demand": COMMON + [
        ("classes empty", _set("classes", []), None),
        ("rate NaN", _set("classes[0].rate", NAN), None),
        ("rate negative", _set("classes[0].rate", -1), None),
        ("rate inf", _set("classes[0].rate", INF), None),
        ("unknown ingress", _set("classes[0].ingress", "nowhere"), None),
        ("unknown task", _set("classes[0].task", "speech"), None),
        ("max_latency_ms NaN", _set("classes[1].max_latency_ms", NAN), None),
        ("min_accuracy 2", _set("classes[2].min_accuracy", 2), None),
        ("duplicate class id", _set("classes[1]", {"ingress": "edge", "task": "digits", "rate": 1}), None),
        ("payload_bytes negative", _set("classes[0].payload_bytes", -1), None),
        ("payload_bytes 2^70", _set("classes[0].payload_bytes", 2 ** 70), None),
        ("unknown field", _set("classes[0].priority", 1), None),
    ],
    "plan": COMMON + [
        ("version 2^63", _set("version", 2 ** 63), None),
        ("version 2^53", _set("version", 2 ** 53), None),
        ("version 0", _set("version", 0), None),
        ("version a word", _set("version", "x"), None),
        ("route to another task's variant", lambda d: _cross_task(d), None),
        ("route from an unknown ingress", lambda d: _first_route(d).update(ingress="nowhere") or d, None),
        ("route with a negative rate", lambda d: _first_route(d).update(rate=-5.0) or d, None),
        ("route rate NaN", lambda d: _first_route(d).update(rate=NAN) or d, None),
        ("share NaN", lambda d: _first_route(d)["targets"][0].update(share=NAN) or d, None),
        ("shares sum 0.5", lambda d: _first_route(d)["targets"][0].update(share=0.5) or d, None),
        ("target not placed", lambda d: _first_route(d)["targets"][0].update(node="regional", variant="nope") or d,
         None),
        ("placement on unknown node", lambda d: d["placements"].update(mars=["digits-linear"]) or d, None),
        ("unknown variant placed", lambda d: d["placements"].update(cloud=["digits-xxl"]) or d, None),
        ("route with an unknown task", lambda d: _first_route(d).update(task="speech") or d, None),
        ("solver status bogus", _set("solver.status", "great"), None),
    ],
}


def _first_route(d: dict[str, Any]) -> dict[str, Any]:
    return d["routes"][sorted(d["routes"])[0]]


def _cross_task(d: dict[str, Any]) -> dict[str, Any]:
    """A digits class routed to a waveforms variant placed where the route points (the issue's case)."""
    r = next(r for _, r in sorted(d["routes"].items()) if r["task"] == "digits")
    node = r["targets"][0]["node"]
    wave = next(iter(_zoo()["tasks"]["waveforms"]["variants"]))
    if wave not in d["placements"].get(node, []):
        d["placements"].setdefault(node, []).append(wave)
    r["targets"] = [{"node": node, "variant": wave, "share": 1.0}]
    return d


# -- commands, and what each reads --------------------------------------------------------------

# (name, argv(files), kinds it reads)
COMMANDS: list[tuple[str, Callable[[dict[str, str]], list[str]], set[str]]] = [
    ("solve", lambda f: ["solve", "--topology", f["topology"], "--catalog", f["catalog"], "--demand",
                         f["demand"]], {"topology", "catalog", "demand"}),
    ("up", lambda f: ["up", f["topology"], "--catalog", f["catalog"], "--state", f["state"]],
     {"topology", "catalog"}),
    ("up --plan", lambda f: ["up", f["topology"], "--catalog", f["catalog"], "--plan", f["plan"], "--state",
                             f["state"]], {"plan"}),
    ("apply", lambda f: ["apply", f["topology"], f["plan"], "--catalog", f["catalog"], "--token", "t"],
     {"topology", "catalog", "plan"}),
    ("status", lambda f: ["status", f["topology"], "--token", "t"], {"topology"}),
    ("control", lambda f: ["control", f["topology"], "--catalog", f["catalog"], "--token", "t", "--rounds", "1"],
     {"topology", "catalog"}),
    ("loadgen", lambda f: ["loadgen", "--topology", f["topology"], "--demand", f["demand"], "--catalog",
                           f["catalog"], "--duration", "1"], {"topology", "catalog", "demand"}),
    ("k8s", lambda f: ["k8s", f["topology"], "--image", "img"], {"topology"}),
    ("node", lambda f: ["node", "--topology", f["topology"], "--id", "edge", "--catalog", f["catalog"]],
     {"topology", "catalog"}),
    ("node --plan", lambda f: ["node", "--topology", f["topology"], "--id", "edge", "--catalog", f["catalog"],
                               "--plan", f["plan"]], {"plan"}),
    ("infer", lambda f: ["infer", "--to", "127.0.0.1:9", "--task", "digits", "--sample", "0", "--catalog",
                         f["catalog"]], {"catalog"}),
    ("models list", lambda f: ["models", "list", "--catalog", f["catalog"]], {"catalog"}),
]


@pytest.fixture
def stubs(monkeypatch):
    """Whatever a command would do once its inputs are accepted raises Reached instead."""
    def reached(*a: Any, **k: Any) -> Any:
        raise Reached("the command accepted its inputs")

    import idn.cli.client_cmd as client_cmd
    import idn.cli.net_cmd as net_cmd
    import idn.controller
    import idn.node.server
    monkeypatch.setattr(net_cmd, "start_network", reached)
    monkeypatch.setattr(net_cmd, "push_plan", reached)
    monkeypatch.setattr(net_cmd, "node_statuses", reached)
    monkeypatch.setattr(idn.controller.Controller, "step", reached)
    monkeypatch.setattr(client_cmd, "run_load", reached)
    monkeypatch.setattr(client_cmd, "Client", reached)
    monkeypatch.setattr(idn.node.server, "NodeServer", reached)


def _files(tmp: Path, kind: str | None = None, doc: Any = None) -> dict[str, str]:
    plan = _plan()
    f = {}
    for name, make in (("topology", topology_doc), ("catalog", catalog_doc), ("demand", demand_doc),
                       ("plan", lambda: copy.deepcopy(plan))):
        path = tmp / f"{name}.yaml"
        if name == kind:
            data = doc if isinstance(doc, bytes) else _dump(doc).encode()
            path.write_bytes(data)
        elif not path.exists():
            path.write_text(_dump(make()))
        f[name] = str(path)
    f["state"] = str(tmp / "run" / "state.json")
    return f


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)


def outcome(result: Any, bad_file: str | None) -> str:
    text = " ".join(result.output.split())
    if "Reached" in text or result.exit_code == 0 or re.match(r"(no feasible plan|no plan found)", text):
        return "accepted"  # got past its inputs (to the network, the node, or the solver's verdict)
    if ("Traceback" in text or "internal error" in text
            or (result.exception is not None and not isinstance(result.exception, SystemExit))):
        return "traceback"
    if result.exit_code not in (1, 2):
        return f"exit {result.exit_code}"
    if bad_file is not None:
        if not re.search(re.escape(bad_file) + r": [^ ]+: .+\(fix: .+\)", text):
            return "refused without naming file: field: problem (fix: ...)"
    return "refused cleanly"


def run_matrix(tmp_path: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    results = {}
    runner = CliRunner()
    for kind, cases in BAD.items():
        for name, mutate, concerns in cases:
            folder = tmp_path / re.sub(r"\W+", "_", f"{kind}-{name}")
            folder.mkdir()
            base = {"topology": topology_doc, "catalog": catalog_doc, "demand": demand_doc}.get(kind)
            doc = mutate(base() if base else copy.deepcopy(_plan()))
            files = _files(folder, kind, doc)
            for cmd, argv, reads in COMMANDS:
                if kind not in reads or (concerns is not None and cmd not in concerns):
                    continue
                r = runner.invoke(app, argv(files))
                results[(kind, name, cmd)] = (outcome(r, files[kind]), r.output)
    return results


def test_valid_files_are_accepted_by_every_command(tmp_path, stubs):
    """The stubs work and the base documents are good: every command gets past its inputs."""
    files = _files(tmp_path)
    for cmd, argv, _ in COMMANDS:
        r = CliRunner().invoke(app, argv(files))
        assert outcome(r, None) == "accepted", (cmd, r.output)


def test_every_bad_file_is_refused_cleanly_by_every_command_that_reads_it(tmp_path, stubs):
    results = run_matrix(tmp_path)
    counts: dict[str, int] = {}
    for verdict, _ in results.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    print(f"\nbad file x command matrix: {len(results)} pairs, {counts}")
    bad = {k: v for k, v in results.items() if v[0] != "refused cleanly"}
    assert not bad, "\n".join(f"{k}: {v[0]}\n{v[1][-600:]}" for k, v in list(bad.items())[:8])
    assert len(results) >= 250


# -- random mutations: never a traceback ------------------------------------------------------------

BAD_VALUES = [NAN, INF, -INF, -1, 0, 2 ** 64, 10 ** 400, "", "a/b", "x", True, None, [], {}, [1, "x"],
              {"a": 1}, 1e-300, "\u00e9\u0000"]


def _leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, (*path, k))] + ([path] if path else [])
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, (*path, i))] + ([path] if path else [])
    return [path]


@lru_cache(maxsize=4)
def _leaf_paths(kind: str) -> list[tuple]:
    if kind != "catalog":
        return _leaves({"topology": topology_doc, "demand": demand_doc}[kind]())
    doc = catalog_doc()  # the zoo is large: the top level, the digits task and its first variant
    first = next(iter(doc["tasks"]["digits"]["variants"]))

    def keep(p: tuple) -> bool:
        if p[0] != "tasks" or len(p) < 2:
            return True
        if p[1] != "digits":
            return len(p) == 2
        return len(p) < 4 or p[2] != "variants" or p[3] == first
    return [p for p in _leaves(doc) if keep(p)]


@settings(max_examples=int(os.environ.get("IDN_FUZZ_EXAMPLES", 120)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["topology", "catalog", "demand"]).flatmap(
    lambda k: st.tuples(st.just(k), st.sampled_from(_leaf_paths(k)), st.sampled_from(BAD_VALUES),
                        st.sampled_from([c for c in COMMANDS if k in c[2]]))))
def test_random_broken_fields_never_give_a_traceback(tmp_path_factory, stubs, case):
    kind, path, value, (cmd, argv, _) = case
    doc = {"topology": topology_doc, "catalog": catalog_doc, "demand": demand_doc}[kind]()
    x = doc
    for k in path[:-1]:
        x = x[k]
    x[path[-1]] = value
    folder = tmp_path_factory.mktemp("fuzz")
    files = _files(folder, kind, doc)
    r = CliRunner().invoke(app, argv(files))
    verdict = outcome(r, files[kind])
    assert verdict in ("accepted", "refused cleanly"), (kind, path, value, cmd, verdict, r.output[-800:])


# -- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["solve", "--topology", "t", "--demand", "d", "--alpha", "-5"], "--alpha"),
    (["solve", "--topology", "t", "--demand", "d", "--alpha", "nan"], "finite"),
    (["solve", "--topology", "t", "--demand", "d", "--sweep-alpha", "abc"], "not a number"),
    (["solve", "--topology", "t", "--demand", "d", "--sweep-alpha", "1,-2"], ">= 0"),
    (["solve", "--topology", "t", "--demand", "d", "--rho", "0"], "--rho"),
    (["solve", "--topology", "t", "--demand", "d", "--solver", "magic"], "use one of"),
    (["solve", "--topology", "t", "--demand", "d", "--time-limit", "-1"], "--time-limit"),
    (["solve", "--topology", "t", "--demand", "d", "--plan-version", str(2 ** 63)], "--plan-version"),
    (["node", "--listen", "nonsense"], "HOST:PORT"),
    (["node", "--listen", "127.0.0.1:99999"], "HOST:PORT"),
    (["node", "--log-level", "bogus"], "use one of"),
    (["node", "--workers", "-1"], "--workers"),
    (["node", "--max-message-mb", "-1"], "--max-message-mb"),
    (["node", "--max-message-mb", "4096"], "--max-message-mb"),
    (["node", "--max-queue", "0"], "--max-queue"),
    (["node", "--id", "a/b"], "--id"),
    (["infer", "--to", "nowhere", "--task", "digits", "--sample", "0"], "HOST:PORT"),
    (["loadgen", "--topology", "t", "--demand", "d", "--duration", "0"], "--duration"),
    (["loadgen", "--topology", "t", "--demand", "d", "--scale", "inf"], "finite"),
    (["control", "t", "--alpha", "-1"], "--alpha"),
    (["control", "t", "--method", "smallest"], "use one of"),
    (["up", "t", "--timeout", "0"], "--timeout"),
])
def test_bad_options_are_usage_errors_at_parse_time(argv, words):
    r = CliRunner().invoke(app, argv)
    text = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and words in text and "Traceback" not in text, r.output


def test_version_and_debug():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("idn ")


def test_an_unexpected_error_is_one_line_with_a_hint_and_debug_shows_it(monkeypatch, tmp_path):
    import idn.cli.solve_cmd as solve_cmd

    def boom(*a: Any, **k: Any) -> Any:
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(solve_cmd, "solve", boom)
    files = _files(tmp_path)
    argv = ["solve", "--topology", files["topology"], "--catalog", files["catalog"], "--demand", files["demand"]]
    r = CliRunner().invoke(app, argv)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and lines == [lines[0]] and "internal error: ZeroDivisionError: a bug" in lines[0]
    assert "--debug" in lines[0]
    r = CliRunner().invoke(app, ["--debug", *argv])
    assert isinstance(r.exception, ZeroDivisionError)


def test_tables_keep_whole_ids_when_piped(tmp_path):
    """A 100-character node id and class id come out whole (the output is not a terminal here)."""
    topo = topology_doc()
    long_id = "edge-" + "x" * 95
    topo["nodes"][2]["id"] = long_id
    topo["links"][1]["a"] = long_id
    dem = {"classes": [{"id": "c-" + "y" * 98, "ingress": long_id, "task": "digits", "rate": 5}]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(dem))
    r = CliRunner().invoke(app, ["solve", "--topology", str(tmp_path / "t.yaml"), "--demand",
                                 str(tmp_path / "d.yaml"), "--catalog", str(DEFAULT_CATALOG)])
    assert r.exit_code == 0, r.output
    assert long_id in r.output and "c-" + "y" * 98 in r.output and "…" not in r.output


# -- the solver's verdicts from the CLI: exit 2 proven infeasible, 3 no plan found ------------------

def test_infeasible_from_the_cli_is_exit_2_with_reasons(tmp_path):
    for i, kinds in enumerate((frozenset({"budget"}), frozenset({"memory", "slo"}),
                               frozenset({"compute", "budget", "memory", "slo"}))):
        (topo, cat, dem), opts = _broken(kinds, i)
        files = _write(tmp_path, topo, cat, dem)
        args = ["solve", *files, "--alpha", str(opts.alpha), "--rho", str(opts.rho)]
        if opts.budget is not None:
            args += ["--budget", str(opts.budget)]
        for method in ("highs", "greedy"):
            r = CliRunner().invoke(app, [*args, "--solver", method, "-o", str(tmp_path / "p.yaml")])
            assert r.exit_code == 2, (kinds, method, r.output)
            assert "no feasible plan" in r.output and "Traceback" not in r.output and "  - " in r.output
            assert not (tmp_path / "p.yaml").exists()


def test_time_limit_from_the_cli_is_exit_3(tmp_path):
    topo, cat, dem = tree_instance(3, 10, 2, 6, 200, seed=1, rate=(1, 60))
    files = _write(tmp_path, topo, cat, dem)
    r = CliRunner().invoke(app, ["solve", *files, "--alpha", "200", "--time-limit", "0.0001", "-o",
                                 str(tmp_path / "p.yaml")])
    assert r.exit_code == 3, r.output
    assert "no-solution" in r.output and "no feasible plan" not in r.output and not (tmp_path / "p.yaml").exists()
