# Two entry points for a fresh machine: `make run` and `make test`.
# Both bootstrap their own virtual environment from this repo's files.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROTOS := $(wildcard proto/*.proto)
STUBS  := idn/protos/.stamp

.PHONY: run test lint proto models bench clean image test-cluster

$(VENV)/.stamp: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "IDN needs Python >= 3.11 (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# Generated gRPC/protobuf stubs: built from proto/, never hand-edited, not committed.
$(STUBS): $(PROTOS) $(VENV)/.stamp
	$(PY) -m grpc_tools.protoc -Iidn/protos=proto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch $@

proto: $(STUBS)

test: $(STUBS) lint
	$(PY) -m pytest -q

# ruff (lint, import order) and mypy (types, untyped bodies checked) on the package;
# ruff also on the tests and benchmarks.
lint: $(STUBS)
	$(PY) -m ruff check idn tests benchmarks
	$(PY) -m mypy
	@! grep -rnE 'type: ignore(\[[a-z-]+(, *[a-z-]+)*\])? *$$' idn --include=*.py --exclude-dir=protos \
	  || { echo 'a `# type: ignore` needs its reason on the same line'; exit 1; }

# The container image of every node (deploy/Dockerfile), built with --network=none from
# wheels fetched first; the base is python:3.11-slim, or one made from Debian's packages
# when Docker Hub cannot be reached. Needs a running Docker daemon.
IMAGE ?= idn:latest
image: $(VENV)/.stamp
	PIP=$(VENV)/bin/pip deploy/build-image.sh $(IMAGE)

# The network on a real orchestrator: a three-engine Docker Swarm on this machine
# (installs and starts Docker if needed, and stops what it started). Root; ~10 min cold.
test-cluster: $(STUBS)
	$(PY) tests/cluster/swarm_e2e.py --image idn:ci

run: $(STUBS)
	$(VENV)/bin/idn demo

# The model zoo (models/): installs the training extra (torch CPU wheel, scikit-learn) and
# rebuilds every variant with fixed seeds; the ONNX files it writes are committed, so
# `make run` and `make test` never need this.
models: $(VENV)/.stamp
	$(PY) -m pip install --quiet -e '.[test,zoo]'
	$(VENV)/bin/idn models build

clean:
	rm -rf $(VENV) idn/protos/*_pb2*.py idn/protos/*.pyi $(STUBS) .pytest_cache
