"""`idn` console script. Command modules register themselves on import."""

import importlib

from idn.cli.app import app

# One module per command group; importing it registers its commands on `app`.
_COMMAND_MODULES = [
    "idn.cli.deploy_cmd",
    "idn.cli.models_cmd",
    "idn.cli.node_cmd",
    "idn.cli.net_cmd",
    "idn.cli.client_cmd",
    "idn.cli.demo_cmd",
    "idn.cli.solve_cmd",
    "idn.cli.simulate_cmd",
]

for _m in _COMMAND_MODULES:
    importlib.import_module(_m)


def main() -> None:
    app()
