"""The node with the stock tritonclient.grpc client, unmodified: wire compatibility.

The client runs in a subprocess (see stock_client/triton_checks.py for why).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_node

SCRIPT = Path(__file__).parent / "stock_client" / "triton_checks.py"
CHECKS = ["health_and_metadata", "fp32", "int64", "bytes_round_trip", "load_unload", "error_status",
          "repository_needs_token", "hostile_names", "stream"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None,
                                reason="tritonclient[grpc] is in the test extra")


@pytest.fixture(scope="module")
def triton_node(model_dir):
    from tests import onnx_models

    onnx_models.identity(model_dir / "ints.onnx", "INT64", ["N"])
    n = start_node(model_dir, ["linear", "strings", "fixed", "ints"], admin=True)  # explicit, with the token
    yield n
    n.stop()


def run_checks(address: str, checks: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), address, *checks], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == [w for c in checks for w in ("ok", c)]


def test_stock_tritonclient(triton_node):
    run_checks(triton_node.address, CHECKS)


def test_stock_tritonclient_cannot_touch_the_repository_by_default(model_dir):
    n = start_node(model_dir, ["linear"])  # --model-control-mode none (the default)
    try:
        run_checks(n.address, ["repository_off"])
    finally:
        n.stop()


def test_wire_format_matches_tritonclients_descriptors():
    """Every message and method IDN defines has tritonclient's field numbers and types."""
    from idn.protos import grpc_service_pb2 as pb
    from tests.stock_client.descriptors import fields

    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "dump_descriptors.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        assert theirs["methods"][m.name] == [m.input_type.full_name, m.output_type.full_name], m.name
    checked = 0
    for name, md in pb.DESCRIPTOR.message_types_by_name.items():
        for fname, spec in fields(md).items():
            assert theirs["messages"][name][fname] == spec, (name, fname)
            checked += 1
    assert checked > 80
