"""`--replicas N`: N backend processes on consecutive ports, supervised by this (parent) process.

Each child is `edgegw backend ... --port P+i --replicas 1`. With several CUDA devices the children are
pinned round-robin through CUDA_VISIBLE_DEVICES; on a CPU the cores are split between them. A child that
dies unexpectedly is restarted (with backoff); SIGTERM/SIGINT is forwarded to all children, which drain
their in-flight requests before exiting, and the parent exits when they have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def gpu_count() -> int:
    """CUDA devices visible to this process, without initialising CUDA in the parent."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def child_env(index: int, replicas: int, gpus: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    elif not gpus and "EDGEGW_TORCH_THREADS" not in env:
        # Split the cores, keeping one spare overall (see gpu_backend.device.configure_threads).
        env["EDGEGW_TORCH_THREADS"] = str(max(1, (len(os.sched_getaffinity(0)) - 1) // replicas))
    return env


def run_pool(child_args: list[str], port: int, replicas: int) -> int:
    """Start and supervise the replicas; `child_args` are the backend options minus port/replicas."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [d.strip() for d in visible.split(",") if d.strip()] if visible else \
        [str(i) for i in range(gpu_count())]
    base = [sys.executable, "-m", "gateway.cli", "backend", *child_args, "--replicas", "1"]
    procs: list[subprocess.Popen[bytes] | None] = [None] * replicas
    restarts = [0.0] * replicas
    failures = [0] * replicas
    stopping = False

    def start(i: int) -> None:
        procs[i] = subprocess.Popen([*base, "--port", str(port + i)], env=child_env(i, replicas, gpus))
        print(f"edgegw backend: replica {i + 1}/{replicas} on port {port + i} (pid {procs[i].pid})", flush=True)

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for i in range(replicas):
        start(i)
    while True:
        alive = [p is not None and p.poll() is None for p in procs]
        if stopping and not any(alive):
            break
        if not stopping:
            for i, ok in enumerate(alive):
                if not ok and time.monotonic() - restarts[i] > 5.0:
                    code = procs[i].returncode if procs[i] else None
                    # A replica that keeps failing (bad model path, out of memory) takes the pool down.
                    failures[i] = failures[i] + 1 if time.monotonic() - restarts[i] < 60 else 1
                    if failures[i] > 3:
                        print(f"edgegw backend: replica {i + 1} keeps failing ({code}); stopping", flush=True)
                        forward(signal.SIGTERM, None)
                        continue
                    print(f"edgegw backend: replica {i + 1} exited ({code}); restarting", flush=True)
                    restarts[i] = time.monotonic()
                    start(i)
        time.sleep(0.2)
    codes = [p.returncode for p in procs if p is not None]
    return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1
