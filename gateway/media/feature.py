"""Media parts as a feature: `routes[].media` (the limits the request decoder applies, `gateway.ingress.media`)."""

from __future__ import annotations

from gateway.config.part import ConfigPart
from gateway.feature import Feature
from gateway.media.config import NAME, MediaLimits, parse_route_part
from gateway.media.docs import DOCS

PART: ConfigPart[None, MediaLimits, None] = ConfigPart(NAME, docs=DOCS, route=parse_route_part, route_keys=("media",))

MEDIA: Feature[None] = Feature(PART)
