"""Print tritonclient's `inference` messages and methods as JSON (run in its own process)."""

import json
import sys
from pathlib import Path

from tritonclient.grpc import service_pb2

sys.path.insert(0, str(Path(__file__).parent))
from descriptors import fields  # noqa: E402

fd = service_pb2.DESCRIPTOR
svc = fd.services_by_name["GRPCInferenceService"]
print(json.dumps({
    "messages": {name: fields(md) for name, md in fd.message_types_by_name.items()},
    "methods": {m.name: [m.input_type.full_name, m.output_type.full_name] for m in svc.methods},
}))
