"""Prometheus metrics of policy versions (registered on the gateway's registry)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from edgecore.files import write_atomic
from gateway.metrics import register_shared, registry

policy_reloads_total = Counter("edgegw_policy_reloads_total", "Policy loads by origin and result",
                               ["origin", "result"], registry=registry)
policy_reload_seconds = Gauge("edgegw_policy_reload_seconds", "How long the last policy swap took",
                              registry=registry, multiprocess_mode="livemax")

_PREFIX = "edgegw_policy_info_"


class PolicyInfo:
    """`edgegw_policy_info{version, loaded_at, pid} 1`: the version each live worker serves, one series
    per worker however many reloads there were.

    Not a prometheus_client Gauge: in multiprocess mode its files keep every label set ever written
    (one per reload per worker). Each worker instead replaces one small file of its own beside the
    multiprocess files, and a scrape reads the files of the workers still alive."""

    def __init__(self) -> None:
        self.current: tuple[str, float] | None = None

    def set(self, version: str, loaded_at: float) -> None:
        self.current = (version, loaded_at)
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            with contextlib.suppress(OSError):  # a scrape then shows this worker's previous version
                write_atomic(Path(folder) / f"{_PREFIX}{os.getpid()}.json",
                             orjson.dumps({"version": version, "loaded_at": loaded_at}), prefix=".edgegw-info-")

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("edgegw_policy_info", "1 for the policy version each worker serves "
                                   "(hash and load time)", labels=["version", "loaded_at", "pid"])
        for pid, (version, loaded_at) in sorted(self._workers().items()):
            family.add_metric([version, f"{loaded_at:.3f}", str(pid)], 1)
        yield family

    def _workers(self) -> dict[int, tuple[str, float]]:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return {os.getpid(): self.current} if self.current else {}
        out: dict[int, tuple[str, float]] = {}
        for path in Path(folder).glob(f"{_PREFIX}*.json"):
            pid_text = path.stem.removeprefix(_PREFIX)
            if not pid_text.isdigit() or not _alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                data = orjson.loads(path.read_bytes())
                out[int(pid_text)] = (str(data["version"]), float(data["loaded_at"]))
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


policy_info = PolicyInfo()
register_shared(policy_info)
