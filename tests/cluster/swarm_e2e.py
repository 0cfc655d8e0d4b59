#!/usr/bin/env python3
"""`make test-cluster`: the IDN on a real orchestrator, a multi-engine Docker Swarm on this machine.

What it does, each step with a bounded wait and an error that says what did not happen:

1. Docker: installs Debian's docker.io (+ iptables, mmdebstrap) when missing, starts
   dockerd when none answers (and stops that one, by PID, at the end; a daemon that was
   already running is left alone).
2. The IDN image, offline (deploy/build-image.sh: --network=none, base from Debian's
   packages when python:3.11-slim cannot be pulled).
3. A Swarm of N engines (default 3): Docker-in-Docker containers on one bridge network
   (not --privileged: capabilities, a private cgroup namespace, engine-entry.sh beside this file),
   swarm init/join, one tier label per engine (cloud, regional, edge), the image loaded
   into each.
4. `idn swarm` renders deploy/topologies/swarm-ci.yaml into a stack; the control token
   becomes a Swarm secret; `docker stack deploy`; every service healthy, on its tier,
   having logged no warning at start.
5. From a container on the overlay network: `idn apply` (a plan solved from
   deploy/demands/swarm-ci.yaml), `idn status`, `idn infer` answered at the edge and
   forwarded across two services (edge -> regional -> cloud).
6. Kills the edge node's container; Swarm replaces it; the new one restored its plan
   from its volume before reporting healthy, and serves it.
7. Tears everything down (stack, engines, their volumes, the network, the dockerd it
   started), also after a failure or Ctrl-C. `--keep` leaves the swarm up; `--down`
   removes what a kept or interrupted run left.

The scheduling, networking and restarts are Swarm's; this script only drives the CLI.
Run as root (it installs packages and starts dockerd):

    .venv/bin/python tests/cluster/swarm_e2e.py [--engines 3] [--image idn:ci] [--keep | --down]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from idn.plan import load_plan  # noqa: E402

LABEL = "idn.ci=test-cluster"  # on every container and network this script creates
NETWORK = "idn-ci"  # the engines' bridge network on this host
ENGINE_IMAGE = "idn-engine:bookworm"
ENGINE_PACKAGES = "docker.io,iptables,ca-certificates"
TIERS = ("cloud", "regional", "edge")  # engine i is labelled TIERS[i % 3]
TIER_LABEL = "idn.tier"
STACK = "idn"
OVERLAY = "idn"
TOPOLOGY = REPO / "deploy" / "topologies" / "swarm-ci.yaml"
DEMAND = REPO / "deploy" / "demands" / "swarm-ci.yaml"
WORK = REPO / ".idn" / "cluster"
DOCKERD_PID = WORK / "dockerd.pid"  # only when this script started dockerd


class Failure(Exception):
    pass


def tail(text: str, lines: int = 15) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


class Cluster:
    def __init__(self, engines: int, image: str):
        self.n = engines
        self.image = image
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self.dockerd: subprocess.Popen | None = None
        self.token = secrets.token_hex(16)
        self.venv_bin = Path(sys.executable).parent

    # --- plumbing -----------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    @contextmanager
    def phase(self, name: str):
        self.log(f"== {name}")
        t = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - t, 1)
        self.log(f"   {name}: {self.timings[name]:.1f} s")

    def sh(self, *cmd: str, timeout: float = 120, check: bool = True, input: str | bytes | None = None,
           env: dict[str, str] | None = None, merge: bool = False) -> str:
        """Run cmd, return its stdout (with stderr when merge); Failure on a non-zero exit."""
        text = not isinstance(input, bytes)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                               text=text, timeout=timeout, input=input, env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise Failure(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
        except FileNotFoundError:
            raise Failure(f"`{cmd[0]}` not found") from None
        out = p.stdout if text else p.stdout.decode(errors="replace")
        err = "" if p.stderr is None else p.stderr if text else p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            shown = re.sub(r"(IDN_CONTROL_TOKEN=)\S+", r"\1***", " ".join(cmd))
            raise Failure(f"`{shown}` exited {p.returncode}:\n{tail(err or out)}")
        return out

    def engine_name(self, i: int) -> str:
        return f"idn-ci-engine-{i}"

    def on(self, i: int, *cmd: str, **kw) -> str:
        """A docker command run by engine i's daemon."""
        return self.sh("docker", "exec", "-i", self.engine_name(i), "docker", *cmd, **kw)

    def wait(self, what: str, probe, timeout: float, interval: float = 1.0):
        """Poll probe() -> (done, detail) until done; Failure naming `what` after timeout."""
        deadline = time.monotonic() + timeout
        last = "-"
        while True:
            try:
                done, last = probe()
            except Failure as e:
                done, last = False, str(e)
            if done:
                return last
            if time.monotonic() > deadline:
                raise Failure(f"{what}: not within {timeout:.0f} s (last seen: {last})")
            time.sleep(interval)

    def idn_client(self, *args: str, timeout: float = 60) -> str:
        """`idn ARGS` in a throwaway container on the stack's overlay network (on engine 1)."""
        return self.on(1, "run", "--rm", "--pull", "never", "--network", OVERLAY, "-v", "/stack:/stack:ro",
                       "-e", f"IDN_CONTROL_TOKEN={self.token}", "-e", "COLUMNS=200", self.image, *args,
                       timeout=timeout)

    # --- 1. docker ------------------------------------------------------------------------
    def docker_up(self) -> None:
        missing = [p for p, exe in (("docker.io", "dockerd"), ("iptables", "iptables"), ("mmdebstrap", "mmdebstrap"))
                   if shutil.which(exe) is None]
        if shutil.which("docker") is None and "docker.io" not in missing:
            missing.append("docker.io")
        if missing:
            if os.geteuid() != 0:
                raise Failure(f"{missing} not installed and not root: apt-get install {' '.join(missing)}")
            self.log(f"installing {missing} from Debian's packages")
            self.sh("apt-get", "update", "-qq", timeout=300)
            self.sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, timeout=600,
                    env={"DEBIAN_FRONTEND": "noninteractive"})
        if self.sh("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=20).strip():
            self.log("dockerd: already running (left running at the end)")
            return
        if os.geteuid() != 0:
            raise Failure("no Docker daemon answers and not root: start dockerd")
        WORK.mkdir(parents=True, exist_ok=True)
        log = open(WORK / "dockerd.log", "ab")
        self.dockerd = subprocess.Popen(["dockerd", "--host", "unix:///var/run/docker.sock"], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        DOCKERD_PID.write_text(str(self.dockerd.pid))
        self.log(f"dockerd: started, pid {self.dockerd.pid} (log {WORK / 'dockerd.log'})")

        def answering():
            if self.dockerd.poll() is not None:
                raise Failure(f"dockerd exited {self.dockerd.returncode}:\n"
                              f"{tail((WORK / 'dockerd.log').read_text(errors='replace'))}")
            v = self.sh("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=10).strip()
            return bool(v), v or "no answer"

        try:
            self.wait("dockerd answering", answering, 60, 0.5)
        except Failure as e:
            raise Failure(f"{e}\n{tail((WORK / 'dockerd.log').read_text(errors='replace'))}") from None

    # --- 2. images ------------------------------------------------------------------------
    def build_images(self) -> None:
        out = self.sh(str(REPO / "deploy" / "build-image.sh"), self.image, timeout=1800,
                      env={"PIP": str(self.venv_bin / "pip")})
        for line in out.splitlines():
            self.log(f"   {line}")
        m = re.search(r"image: \S+ on \S+, (\d+) MB, built offline in (\d+) s", out)
        if m:
            self.timings["image MB"], self.timings["image build (offline) s"] = float(m[1]), float(m[2])
        m = re.search(r"base image \S+: built from Debian \S+ in (\d+) s", out)
        if m:
            self.timings["base image s"] = float(m[1])

    def build_engine_image(self) -> None:
        out = self.sh(str(REPO / "deploy" / "base-image.sh"), ENGINE_IMAGE, timeout=1200,
                      env={"BASE_PACKAGES": ENGINE_PACKAGES})
        self.log(f"   engine {out.strip()}")
        m = re.search(r"built from Debian \S+ in (\d+) s", out)
        if m:
            self.timings["engine image s"] = float(m[1])

    # --- 3. swarm -------------------------------------------------------------------------
    def swarm_up(self) -> None:
        self.sh("docker", "network", "create", "--label", LABEL, NETWORK)
        caps = [c for cap in _ENGINE_CAPS for c in ("--cap-add", cap)]
        for i in range(1, self.n + 1):
            self.sh("docker", "run", "-d", "--name", self.engine_name(i), "--hostname", self.engine_name(i),
                    "--label", LABEL, "--network", NETWORK, *caps, "--cgroupns", "private",
                    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                    # the engine's images and containers in memory: overlay2 works on tmpfs, and
                    # teardown is instant (on a disk volume, removing them took ~40 s)
                    "--tmpfs", "/var/lib/docker:exec,size=4g", "--tmpfs", "/run",
                    "-v", f"{REPO / 'tests' / 'cluster' / 'engine-entry.sh'}:/engine-entry.sh:ro",
                    "--entrypoint", "/engine-entry.sh", ENGINE_IMAGE)
        for i in range(1, self.n + 1):
            def up(i=i):
                if self.sh("docker", "inspect", "-f", "{{.State.Running}}", self.engine_name(i)).strip() != "true":
                    raise Failure(f"{self.engine_name(i)} stopped:\n"
                                  f"{tail(self.sh('docker', 'logs', self.engine_name(i), check=False, merge=True))}")
                v = self.on(i, "info", "--format", "{{.ServerVersion}}", check=False, timeout=10).strip()
                return bool(v), v or "no answer"
            self.wait(f"engine {i}'s dockerd", up, 60, 0.5)
        ip = self.sh("docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}',
                     self.engine_name(1)).strip()
        self.on(1, "swarm", "init", "--advertise-addr", ip)
        token = self.on(1, "swarm", "join-token", "-q", "worker").strip()
        for i in range(2, self.n + 1):
            self.on(i, "swarm", "join", "--token", token, f"{ip}:2377", timeout=60)

        def all_ready():
            rows = self.on(1, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}").split("\n")
            ready = [r for r in rows if r.endswith("Ready Active")]
            return len(ready) == self.n, f"{len(ready)}/{self.n} ready"
        self.wait("every engine Ready in the swarm", all_ready, 60)
        for i in range(1, self.n + 1):
            self.on(1, "node", "update", "--label-add", f"{TIER_LABEL}={TIERS[(i - 1) % len(TIERS)]}",
                    self.engine_name(i))
        self.log(f"   swarm: {self.n} engines, tiers " +
                 ", ".join(f"{self.engine_name(i)}={TIERS[(i - 1) % len(TIERS)]}" for i in range(1, self.n + 1)))

    def load_image(self) -> None:
        tar = WORK / "image.tar"
        self.sh("docker", "save", "-o", str(tar), self.image, timeout=300)
        errors: list[str] = []

        def load(i: int) -> None:
            try:
                with open(tar, "rb") as f:
                    p = subprocess.run(["docker", "exec", "-i", self.engine_name(i), "docker", "load", "-q"],
                                       stdin=f, capture_output=True, timeout=600)
                if p.returncode != 0:
                    errors.append(f"engine {i}: {tail(p.stderr.decode(errors='replace'))}")
            except subprocess.TimeoutExpired:
                errors.append(f"engine {i}: docker load did not finish in 600 s")
        threads = [threading.Thread(target=load, args=(i,)) for i in range(1, self.n + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tar.unlink()
        if errors:
            raise Failure("loading the image into the engines failed: " + "; ".join(errors))

    # --- 4. deploy ------------------------------------------------------------------------
    def deploy(self) -> None:
        stack_dir = WORK / "stack"
        shutil.rmtree(stack_dir, ignore_errors=True)
        stack_dir.mkdir(parents=True)
        idn = str(self.venv_bin / "idn")
        self.sh(idn, "swarm", str(TOPOLOGY), "--image", self.image, "-o", str(stack_dir / "stack.yaml"),
                "--network", OVERLAY, "--tier-label", TIER_LABEL)
        self.sh(idn, "solve", "--topology", str(TOPOLOGY), "--demand", str(DEMAND), "-o", str(stack_dir / "plan.yaml"),
                timeout=120)
        self.plan = load_plan(stack_dir / "plan.yaml")
        self.sh("docker", "cp", str(stack_dir), f"{self.engine_name(1)}:/stack")
        self.on(1, "secret", "create", "idn-control", "-", input=self.token)
        # the image is on every engine already: no registry lookup (it would wait on the network)
        self.on(1, "stack", "deploy", "--resolve-image", "never", "-c", "/stack/stack.yaml", STACK, timeout=60)
        import yaml
        self.services = list(yaml.safe_load((stack_dir / "stack.yaml").read_text())["services"])
        for svc in self.services:
            self.wait(f"service {svc} running and healthy", lambda svc=svc: self.healthy(svc), 120)
        # each service runs on the engine its tier constraint allows
        for svc in self.services:
            tier = svc.removeprefix("idn-")  # swarm-ci.yaml: node id == tier
            engine = self.on(1, "service", "ps", f"{STACK}_{svc}", "--filter", "desired-state=running",
                             "--format", "{{.Node}}").split()
            allowed = {self.engine_name(i) for i in range(1, self.n + 1) if TIERS[(i - 1) % len(TIERS)] == tier}
            if not engine or engine[0] not in allowed:
                raise Failure(f"service {svc} runs on {engine}, not on a {tier} engine {sorted(allowed)}")
            i, cid = self.container_of(svc)
            warned = [line for line in self.on(i, "logs", cid, merge=True).splitlines()
                      if "WARNING" in line or "[W:" in line or "Warning" in line]
            if warned:
                raise Failure(f"service {svc} logged warnings at start:\n" + "\n".join(warned))
        self.log(f"   {len(self.services)} services healthy, each on an engine of its tier, no warning logged")

    def container_of(self, svc: str, healthy: bool = False) -> tuple[int, str] | None:
        """(engine, container id) of the service's running container, if any."""
        filters = ["--filter", f"label=com.docker.swarm.service.name={STACK}_{svc}"]
        if healthy:
            filters += ["--filter", "health=healthy"]
        for i in range(1, self.n + 1):
            ids = self.on(i, "ps", "-q", *filters, timeout=20).split()
            if ids:
                return i, ids[0]
        return None

    def healthy(self, svc: str) -> tuple[bool, str]:
        found = self.container_of(svc, healthy=True)
        if found:
            return True, f"engine {found[0]} container {found[1]}"
        state = self.on(1, "service", "ps", f"{STACK}_{svc}", "--no-trunc", "--format",
                        "{{.CurrentState}} {{.Error}}", timeout=20).strip().splitlines()
        return False, state[0] if state else "no task"

    # --- 5. operate -----------------------------------------------------------------------
    def status_rows(self) -> dict[str, list[str]]:
        out = self.idn_client("status", "/stack/stack.topology.yaml")
        rows = {}
        for line in out.splitlines():
            cells = [c.strip() for c in line.split("│")[1:-1]]
            if len(cells) >= 6 and cells[2].endswith(":8001"):
                rows[cells[0]] = cells
        return rows

    def check_status(self, version: int) -> None:
        rows = self.status_rows()
        for node in ("cloud", "regional", "edge"):
            if node not in rows:
                raise Failure(f"idn status has no row for {node}: {rows}")
            _, _, _, ready, plan, variants = rows[node][:6]
            want = ", ".join(sorted(self.plan.variants_on(node))) or "-"
            if ready != "yes" or plan != f"v{version}" or ", ".join(sorted(variants.split(", "))) != want:
                raise Failure(f"idn status, {node}: ready={ready} plan={plan} variants={variants}; "
                              f"expected ready=yes plan=v{version} variants={want}")

    def infer(self, task: str, *extra: str) -> tuple[str, str, int]:
        out = self.idn_client("infer", "--to", "idn-edge:8001", "--task", task, "--sample", "3", *extra)
        m = re.search(r"served:\s+node (\S+) · variant (\S+) .*· (\d+) hop", out)
        if not m:
            raise Failure(f"idn infer: no 'served:' line in\n{out}")
        return m[1], m[2], int(m[3])

    def operate(self) -> None:
        out = self.idn_client("apply", "/stack/stack.topology.yaml", "/stack/plan.yaml")
        m = re.search(r"plan v(\d+) applied", out)
        if not m:
            raise Failure(f"idn apply: no 'plan vN applied' in\n{out}")
        self.version = int(m[1])
        self.check_status(self.version)
        self.log(f"   idn apply: plan v{self.version}; idn status: every node ready on it")
        node, variant, hops = self.infer("waveforms")
        if node != "edge" or hops != 0:
            raise Failure(f"waveforms at the edge: served by {node}/{variant} after {hops} hops, expected the edge")
        node, variant, hops = self.infer("digits", "--min-accuracy", "0.945")
        if node != "cloud" or hops != 2:
            raise Failure(f"digits (min accuracy 0.945) at the edge: served by {node}/{variant} after {hops} hops, "
                          f"expected the cloud, 2 hops (edge -> regional -> cloud)")
        self.log(f"   idn infer: waveforms served at the edge; digits forwarded edge -> regional -> cloud "
                 f"({variant}, 2 hops)")

    # --- 6. a node dies -------------------------------------------------------------------
    def kill_and_replace(self) -> None:
        svc = "idn-edge"
        engine, old = self.container_of(svc, healthy=True) or (0, "")
        if not old:
            raise Failure(f"{svc}: no healthy container to kill")
        t = time.monotonic()
        self.on(engine, "kill", old)
        self.log(f"   killed {svc}'s container {old} on engine {engine}")

        def replaced():
            found = self.container_of(svc, healthy=True)
            return bool(found and found[1] != old), (f"container {found[1]}" if found else self.healthy(svc)[1])
        self.wait(f"Swarm replacing {svc}'s container (healthy)", replaced, 90, 0.5)
        self.timings["replacement s"] = round(time.monotonic() - t, 1)
        engine, new = self.container_of(svc, healthy=True)
        tasks = self.on(1, "service", "ps", f"{STACK}_{svc}", "--format", "{{.DesiredState}}").split()
        if tasks.count("Shutdown") < 1:
            raise Failure(f"{svc}: expected Swarm to record the dead task; tasks: {tasks}")
        logs = self.on(engine, "logs", new, check=False, merge=True)
        started = [line for line in logs.splitlines() if "listening on" in line]
        if not started or f"(plan v{self.version})" not in started[0]:
            raise Failure(f"{svc}'s new container did not start on plan v{self.version}: {started or tail(logs)}")
        self.check_status(self.version)
        node, variant, hops = self.infer("waveforms")
        if node != "edge" or hops != 0:
            raise Failure(f"after the restart, waveforms at the edge: served by {node}/{variant}, expected the edge")
        self.log(f"   replaced by {new} on engine {engine} in {self.timings['replacement s']:.1f} s; started on "
                 f"plan v{self.version} (restored from its volume) and serves it")

    # --- 7. teardown ----------------------------------------------------------------------
    def down(self) -> None:
        ids = self.sh("docker", "ps", "-aq", "--filter", f"label={LABEL}", check=False, timeout=30).split()
        if ids:
            self.sh("docker", "rm", "-f", "-v", *ids, check=False, timeout=120)
        nets = self.sh("docker", "network", "ls", "-q", "--filter", f"label={LABEL}", check=False, timeout=30).split()
        if nets:
            self.sh("docker", "network", "rm", *nets, check=False, timeout=60)
        if ids or nets:
            self.log(f"removed {len(ids)} engine containers (with their volumes) and {len(nets)} network(s)")
        stop_dockerd(self.dockerd, self.log)
        self.dockerd = None

    def summary(self) -> None:
        self.timings["total s"] = round(time.monotonic() - self.t0, 1)
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / "summary.json").write_text(json.dumps(self.timings, indent=1) + "\n")
        self.log("timings: " + ", ".join(f"{k} {v:g}" for k, v in self.timings.items()))


# Every capability but CAP_SYS_RESOURCE, which these machines do not grant (hence no --privileged).
_ENGINE_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
                "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
                "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
                "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
                "BLOCK_SUSPEND", "AUDIT_READ")


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def stop_dockerd(proc: subprocess.Popen | None, log) -> None:
    """Stop the dockerd this script started (from the Popen, or the PID file of an earlier
    run), then any of its children (containerd) still alive, by PID: SIGTERM, then SIGKILL."""
    pid = proc.pid if proc is not None else None
    if pid is None and DOCKERD_PID.is_file():
        pid = int(DOCKERD_PID.read_text())
        if _comm(pid) != "dockerd":
            DOCKERD_PID.unlink()
            return
    if pid is None:
        return
    children = [c for c in _children(pid) if _comm(c) in ("containerd", "docker-proxy")]
    for p, grace in [(pid, 30.0)] + [(c, 10.0) for c in children]:
        if not _alive(p):
            continue
        os.kill(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(p) and time.monotonic() < deadline:
            if proc is not None and p == pid:
                try:
                    proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.2)
        if _alive(p):
            os.kill(p, signal.SIGKILL)
            log(f"{_comm(p) or p}: SIGKILL after {grace:.0f} s")
    if proc is not None:
        proc.wait(timeout=10)
    DOCKERD_PID.unlink(missing_ok=True)
    log(f"dockerd (pid {pid}) and its children {children} stopped")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", type=int, default=3, help="Swarm engines (>= 3: one per tier)")
    ap.add_argument("--image", default="idn:ci", help="tag of the IDN image to build and deploy")
    ap.add_argument("--timeout", type=float, default=3600, help="give up (and tear down) after this many seconds")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--keep", action="store_true", help="leave the swarm running (then --down)")
    g.add_argument("--down", action="store_true", help="only remove what an earlier run left")
    args = ap.parse_args()
    if args.engines < len(TIERS):
        ap.error(f"--engines must be at least {len(TIERS)} (one per tier)")
    c = Cluster(args.engines, args.image)
    WORK.mkdir(parents=True, exist_ok=True)

    def expired(*_):
        raise Failure(f"gave up after {args.timeout:.0f} s (--timeout)")

    def terminated(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, expired)
    signal.signal(signal.SIGTERM, terminated)
    signal.alarm(int(args.timeout))
    if args.down:
        c.down()
        return 0
    ok = False
    try:
        with c.phase("docker"):
            c.docker_up()
            ids = c.sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").split()
            if ids:
                c.log(f"removing {len(ids)} containers left by an earlier run")
                c.sh("docker", "rm", "-f", "-v", *ids, timeout=120)
            for net in c.sh("docker", "network", "ls", "-q", "--filter", f"label={LABEL}").split():
                c.sh("docker", "network", "rm", net)
        with c.phase("images (IDN and engine, side by side)"):
            engine_error: list[Failure] = []

            def engine_image():
                try:
                    c.build_engine_image()
                except Failure as e:
                    engine_error.append(e)
            t = threading.Thread(target=engine_image)  # mmdebstrap waits on the network and dpkg
            t.start()
            try:
                c.build_images()
            finally:
                t.join()
            if engine_error:
                raise engine_error[0]
        with c.phase("swarm up"):
            c.swarm_up()
            c.load_image()
        with c.phase("deploy"):
            c.deploy()
        with c.phase("apply, status, infer"):
            c.operate()
        with c.phase("kill and replace"):
            c.kill_and_replace()
        ok = True
    except Failure as e:
        c.log(f"FAILED: {e}")
    except KeyboardInterrupt:
        c.log("interrupted")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # teardown must finish
        if args.keep and ok:
            c.log(f"--keep: the swarm stays up (engines {', '.join(c.engine_name(i) for i in range(1, c.n + 1))}); "
                  f"remove it with {sys.argv[0]} --down")
        else:
            with c.phase("teardown"):
                c.down()
        c.summary()
    c.log("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
