"""What one feature adds to the policy file: its keys, how it reads them, documents them, and how a
reload treats them. A feature package declares one `ConfigPart` (inside its `Feature`); the loader,
the reference generator and the reload classifier iterate over them and know no feature by name.

A part's sections hang off the policy's frame (`gateway.config.schema`): a top-level section
(`redis:`), a section of each route (`routes[].cache`) or of each pool (`pools[].dns`). The parsed
values live in the frame's `sections` mappings under the part's name; the feature's own `config`
module reads them back with their type (e.g. `gateway.cache.config.route_rule(route)`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.config.reader import Section

if TYPE_CHECKING:
    from gateway.config.schema import IssuerConfig, PoolConfig

LIVE, NEXT_CONNECTION, RESTART = "live", "next connection", "restart"

Top = TypeVar("Top")
PerRoute = TypeVar("PerRoute")
PerPool = TypeVar("PerPool")


@dataclass(frozen=True)
class Reload:
    """When a reload applies a changed key (`LIVE`, `NEXT_CONNECTION` or `RESTART`) and what happens."""

    applies: str
    why: str


@dataclass(frozen=True)
class KeyDocs:
    """The hand-written half of docs/configuration.md for a part's keys (generic paths such as
    `routes[].cache.ttl_s`); the other half comes from the parsers' recorded reads."""

    descriptions: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)  # defaults a recorded read cannot express
    allowed: Mapping[str, str] = field(default_factory=dict)  # allowed values checked by hand
    types: Mapping[str, str] = field(default_factory=dict)  # types a recorded read cannot express
    notes: Mapping[str, str] = field(default_factory=dict)  # prose under a table's heading
    tables: tuple[str, ...] = ()  # key prefixes that get a table of their own, in order
    free_form: tuple[str, ...] = ()  # mappings whose keys the operator names (folded into `*`)


@dataclass(frozen=True)
class Frame:
    """What a part's parser may need of the policy being read: its file and folder, and the frame
    read so far (issuers and pools are read before any part; the top-level parts before the routes)."""

    file: str
    base_dir: Path
    issuers: tuple[IssuerConfig, ...]
    pools: tuple[PoolConfig, ...]
    top: Mapping[str, object]  # the top-level sections of the parts read so far, by part name


@dataclass(frozen=True)
class ConfigPart(Generic[Top, PerRoute, PerPool]):
    """One feature's keys. Each parser reads its keys from the section it is given (the top level,
    a route, a pool) and returns its typed value, or None when the policy leaves the feature off
    there; the section rejects keys no part read.

    `top_keys`, `route_keys` and `pool_keys` name the keys each parser reads there: with one key the
    parsed value is that key's; with several it carries one attribute per key (a reload's change
    report names keys by them)."""

    name: str
    reload: Mapping[str, Reload] = field(default_factory=dict)  # key prefix -> how a reload applies it
    docs: KeyDocs = KeyDocs()
    top: Callable[[Section, Frame], Top | None] | None = None
    top_keys: tuple[str, ...] = ()
    route: Callable[[Section, Frame], PerRoute | None] | None = None
    route_keys: tuple[str, ...] = ()
    pool: Callable[[Section, Frame], PerPool | None] | None = None
    pool_keys: tuple[str, ...] = ()

    def keyed(self, value: object, keys: tuple[str, ...]) -> list[tuple[str, object]]:
        """A parsed section as (key, value) pairs, for comparing two versions key by key."""
        if len(keys) == 1:
            return [(keys[0], value)]
        return [(key, getattr(value, key, None)) for key in keys]
