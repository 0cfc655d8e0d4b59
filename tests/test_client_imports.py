"""Clients are clients: importing them must not pull in the server's data plane or ONNX Runtime.

``idn.client`` and everything built on it (loadgen, the controller, the launcher, the
demo, the CLI, whose `idn node` imports the server only when a node starts)."""

import subprocess
import sys


def test_client_does_not_import_the_node_or_onnxruntime():
    code = (
        "import sys, idn.client, idn.protocol.params, idn.protocol.tensors, idn.protocol.status\n"
        "import idn.loadgen, idn.controller, idn.launcher, idn.demo, idn.cli\n"
        "bad = sorted(m for m in sys.modules if m == 'onnxruntime' or m.startswith('onnxruntime.')"
        " or m == 'idn.node' or m.startswith('idn.node.') or m.startswith('prometheus_client'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"idn.client imported server modules: {out.stdout.strip()}"


def test_the_check_would_notice_a_server_import():
    """Guard against a check that cannot fail: importing the node does load ONNX Runtime."""
    code = "import sys, idn.node.dataplane; print('onnxruntime' in sys.modules, 'idn.node' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
