"""A node's runtime settings: one place for the knobs and their defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# The batch limit of a variant the catalog does not profile (a model given by path): the
# largest batch the catalog profiles, and one that every small model in the zoo gains from.
DEFAULT_MAX_BATCH = 32


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, not ``os.cpu_count()`` (a node
    pinned to one core of two would otherwise start two workers that time-slice it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class NodeSettings:
    # ONNX Runtime execution providers in priority order; a GPU node is one line:
    # ("CUDAExecutionProvider", "CPUExecutionProvider").
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    # Threads ONNX Runtime may use inside one model run (0 = ORT's default: all cores).
    intra_op_threads: int = 1
    # Worker threads that run sessions off the event loop (ORT releases the GIL).
    workers: int = field(default_factory=usable_cpus)
    # Requests admitted per variant (running + waiting); the next gets RESOURCE_EXHAUSTED.
    max_queue: int = 64
    # Requests one ModelStreamInfer stream may hold at once (running, or answered and not yet
    # written back); past it the node stops reading that stream (grpc_service._Stream).
    stream_max_in_flight: int = 64
    # Forward to each neighbour over one ModelStreamInfer stream instead of a ModelInfer call
    # per request: the cheaper hop (README "Streaming": benchmarks/hop.py, both in one run).
    forward_stream: bool = True
    # gRPC message size limit, both directions.
    max_message_bytes: int = 64 * 1024 * 1024
    # Largest tensor accepted, in elements (guards against absurd shapes).
    max_elements: int = 16 * 1024 * 1024
    # Runs predicted shorter than this run on the event loop thread: a thread hand-off
    # costs more than the run itself. 0 sends every run to the worker pool.
    inline_max_us: float = 200.0
    # Adaptive batching (idn.node.batcher), on by default: requests for one variant that
    # queue while a run of it is in flight are merged into its next run, with no added
    # wait when idle. The most samples per run: None = the catalog's profile for the
    # variant (Variant.batch_limit: the largest profiled batch no dearer per sample than
    # batch 1), or DEFAULT_MAX_BATCH for a variant the catalog does not profile; a number
    # overrides that for every variant (1 = off). Only variants whose inputs and outputs
    # all have a dynamic leading dimension are batched, never int8-dynamic ones.
    max_batch: int | None = None
    # Runs of one batched variant in flight at once (Triton's instance count): requests
    # merge only once all are busy. 0 = one per worker thread.
    runs_per_variant: int = 1
    # Timeout for a forwarded request whose caller set no deadline: nothing hangs forever.
    forward_timeout_s: float = 30.0
    # Neighbour health checks (idn.node.neighbours): one every probe_interval_s per node this
    # one forwards to (0 = off: only forwarding errors mark a neighbour down), each given
    # probe_timeout_s; a hung neighbour is down after two unanswered checks.
    probe_interval_s: float = 0.2
    probe_timeout_s: float = 0.5
    # A hop that does not answer is given up on after this share of the remaining deadline
    # when a local degraded answer exists (1 = wait for the whole deadline).
    hop_share: float = 0.5
    # Emulation of a slower box (``--emulate``, the topology's ``slowdown``): every run takes
    # this many times the CPU time it used here. CPU time, not wall time: on a shared machine
    # a run's wall time includes waiting for a core, and stretching that would emulate a box
    # slower than the topology says (the waiting is stretched too).
    slowdown: float = 1.0
    # Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    grace_s: float = 5.0
