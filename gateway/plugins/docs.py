"""What the keys of `plugins`, `plugin_dir` and `routes[].plugins` mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs
from gateway.plugins.config import PHASES

_DESCRIPTIONS: dict[str, str] = {
    "plugins": "wasm plugin definitions, bound to routes by name (`docs/plugins.md`)",
    "plugin_dir": "a directory (relative to the policy file) watched for `NAME.wasm`/`NAME.wat` plugin "
                  "versions; admin uploads are written there too, so workers and restarts converge",
    "routes[].plugins": "ordered plugin chain (`docs/plugins.md`)",
    "routes[].plugins[].name": "a plugin of the top-level `plugins` list",
    "routes[].plugins[].phase": "where in the pipeline it runs: JWT auth → `auth` → rate limit → `routing` "
                                "→ pool selection → `preprocess` → cache → forward → `response`",
    "routes[].plugins[].config": "this route's plugin configuration, merged over the plugin's `config` "
                                 "(mappings merge shallowly, anything else replaces)",
    "plugins[].name": "referenced by `routes[].plugins[].name`, the admin API and `plugin_dir` file names",
    "plugins[].file": "the `.wasm` (relative to the policy file); absent: from `plugin_dir` or the admin API",
    "plugins[].sha256": "pin: every version (file, upload, `plugin_dir`) must have this hash",
    "plugins[].config": "delivered through `proxy_on_configure`: a mapping or list as JSON, a string verbatim",
    "plugins[].vm_config": "delivered through `proxy_on_vm_start`",
    "plugins[].failure_policy": "on a plugin failure: `fail_closed` answers 500 `plugin_failed`, "
                                "`fail_open` skips the plugin",
    "plugins[].limits": "the sandbox",
    "plugins[].limits.fuel": "fuel (about instructions) per callback",
    "plugins[].limits.deadline_ms": "wall-clock deadline per callback",
    "plugins[].limits.memory_mb": "memory cap per instance",
    "plugins[].limits.http_call_timeout_ms": "timeout of a `proxy_http_call`",
    "plugins[].upstreams": "the only hosts `proxy_http_call` may reach, by name",
    "plugins[].upstreams.*": "`http(s)://host:port` of the upstream with this name",
    "plugins[].canary": "how a new version is trialled",
    "plugins[].canary.weight": "share of requests a new version takes",
    "plugins[].canary.max_failure_rate": "roll back when the canary's failure rate exceeds the stable "
                                         "version's significantly and is not shown to be within this of it",
    "plugins[].canary.min_requests": "canary requests on a route before it is first judged there",
    "plugins[].canary.window": "kept for old policies; no longer used (the judge counts every request since the "
                               "canary started)",
    "plugins[].canary.promote_after": "promote after this many requests when no route's evidence is still open "
                                      "(0: only by `POST /admin/plugins/NAME/promote`)",
    "plugins[].canary.confidence": "how sure a rollback must be: a healthy version is rolled back with a chance "
                                   "of at most 1 - confidence over all its looks (docs/policy-reload.md, How a "
                                   "canary is judged)",
    "plugins[].canary.failed_looks": "failing looks in a row that roll the canary back",
    "plugins[].root_id": "the `plugin_root_id` property: the root id an SDK registers its contexts under "
                         "(the C++ SDK's default is \"\")",
    "plugins[].vm_id": "the `plugin_vm_id` property",
    "plugins[].limits.min_tick_ms": "shortest tick period: a shorter `proxy_set_tick_period_milliseconds` is raised to it",
    "plugins[].canary.max_status_shift": "roll back when, on a route, the share of the canary's requests answered "
                                         "locally by the plugin, with a 4xx or with a 5xx exceeds the stable "
                                         "version's there significantly and is not shown to be within this of it",
}

_DEFAULTS: dict[str, str] = {
    "plugins[].upstreams.*": "-",
}

_ALLOWED: dict[str, str] = {
    "routes[].plugins[].phase": ", ".join(f"`{p}`" for p in PHASES),
    "plugins[].sha256": "64 hex digits",
}

_NOTES: dict[str, str] = {
    "plugins[]": "Writing, deploying and hot-loading plugins: `docs/plugins.md`.",
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed=_ALLOWED,
    notes=_NOTES,
    tables=("plugins[]",),
    free_form=("plugins[].upstreams",),
)
