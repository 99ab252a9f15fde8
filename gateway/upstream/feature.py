"""Backend pools as a feature: the `pools:` keys (the frame reads each pool; this feature adds
`pools[].dns` and `pools[].rollout`), the pool selection stage, `/admin/pools` and rollouts, and the
pools' part of the status page. The pools themselves (`Upstreams`) belong to every policy version:
`gateway.policy.parts` takes unchanged pools over on a reload."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.feature import Assembly, Feature, Placed
from gateway.upstream.admin import upstream_routes
from gateway.upstream.config import NAME, PoolOptions, parse_pool_part
from gateway.upstream.docs import DOCS
from gateway.upstream.stage import PoolSelectStage
from gateway.upstream.status import upstream_status

PART: ConfigPart[None, None, PoolOptions] = ConfigPart(
    NAME,
    reload={"pools": Reload(LIVE, "a changed pool is rebuilt and health-checked before it serves (its connections, "
                                  "ejections and rollout start afresh); unchanged pools keep theirs")},
    docs=DOCS,
    pool=parse_pool_part,
    pool_keys=("dns", "rollout"),
)


def _stages(assembly: Assembly, state: None) -> Sequence[Placed]:
    return [("select", PoolSelectStage(assembly.table, assembly.upstreams))]


UPSTREAM: Feature[None] = Feature(PART, stages=_stages, admin_routes=lambda config: upstream_routes(),
                                  status=upstream_status)
