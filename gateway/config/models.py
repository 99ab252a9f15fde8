"""Models as partners name them: a pool's model entries (public name, the backend's name, context
window) and fallbacks (per model and per route), parsed and cross-checked once at start-up.

    pools:
      - name: gpu
        models:
          - smollm2                          # plain: the public name is the backend's name
          - name: autoglm-phone-9b           # what partners send and see
            backend_name: AutoGLM-Phone-9B   # what this pool's servers expect (vLLM --served-model-name)
            context_length: 8192             # prompt + max_tokens; longer requests never reach it
            max_token_bytes: 81              # its longest token: how prompts are sized (context_window.py)
            fallbacks:
              - {model: phone-long, when: [context_length]}
              - {model: autoglm-phone-9b, pool: cpu}   # the same public name in another pool
              - {model: smollm2}             # every trigger

Fallbacks are followed transitively (a fallback's own fallbacks are its alternatives) in depth-first
order, each (model, pool) at most once; `check_fallbacks` refuses cycles, unknown models and models
a route's callers may not use.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from gateway.config.reader import ConfigError, Section
from gateway.config.schema import DEFAULT_MAX_TOKEN_BYTES, FALLBACK_TRIGGERS, Fallback, ModelSpec

TRIGGERS = FALLBACK_TRIGGERS
MAX_CHAIN = 8  # models one request may try, the first included


def parse_pool_models(sec: Section) -> tuple[list[str], tuple[ModelSpec, ...]]:
    """`models`: strings (names or globs) or mappings (`name`, `backend_name`, `context_length`,
    `fallbacks`). Returns the public names in config order and the mapping entries."""
    value = sec.raw("models", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise sec.error("models", "expected a list of model names or mappings")
    names: list[str] = []
    specs: list[ModelSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            names.append(item)
            continue
        entry = Section(item, sec.file, sec.key(f"models[{i}]"))
        name = entry.str("name")
        if _wild(name):
            raise entry.error("name", "a model entry with settings names one model, not a pattern")
        spec = ModelSpec(name=name, backend_name=entry.str("backend_name", name),
                         context_length=entry.int("context_length", None, min=1),
                         max_token_bytes=entry.int("max_token_bytes", DEFAULT_MAX_TOKEN_BYTES, min=1, max=4096),
                         fallbacks=parse_fallbacks(entry))
        entry.done()
        names.append(name)
        specs.append(spec)
    return names, tuple(specs)


def parse_fallbacks(sec: Section) -> tuple[Fallback, ...]:
    """`fallbacks: [{model, on}]`, in the order they are tried."""
    out = []
    for item in sec.sections("fallbacks"):
        if True in item.data:  # `on:` unquoted: YAML 1.1 reads the key as the boolean true
            raise item.error("when", "name the triggers with `when:` (YAML reads an `on:` key as true)")
        on = item.str_list("when", list(TRIGGERS))
        for trigger in on:
            if trigger not in TRIGGERS:
                raise item.error("when", f"unknown trigger {trigger!r} (allowed: {', '.join(TRIGGERS)})")
        if not on:
            raise item.error("when", "name at least one trigger")
        out.append(Fallback(item.str("model"), frozenset(on), item.str("pool", None)))
        item.done()
    if len({(f.model, f.pool) for f in out}) != len(out):
        raise sec.error("fallbacks", "a model is listed twice")
    return tuple(out)


def _wild(name: str) -> bool:
    return "*" in name or "?" in name or "[" in name


Node = tuple[str, str]  # (public model, pool)


class FallbackGraph:
    """Every (model, pool)'s fallbacks across pools: where a request goes next, and the checks
    `check-config` applies. A fallback without `pool` goes to the first pool serving its model."""

    def __init__(self, pools: list[tuple[str, tuple[str, ...], tuple[ModelSpec, ...]]]) -> None:
        self.served = {name: names for name, names, _ in pools}  # pool -> public names (globs included)
        self.specs = {(spec.name, name): spec for name, _, specs in pools for spec in specs}

    def pool_of(self, fb: Fallback) -> str | None:
        """The pool a fallback is sent to; None when none serves its model (there, when it names one)."""
        for pool, names in self.served.items():
            if (fb.pool is None or fb.pool == pool) and any(fnmatchcase(fb.model, m) for m in names):
                return pool
        return None

    def spec(self, node: Node) -> ModelSpec | None:
        return self.specs.get(node)

    def edges(self, node: Node) -> list[tuple[Fallback, Node]]:
        spec = self.specs.get(node)
        return [] if spec is None else self.targets(spec.fallbacks)

    def targets(self, fallbacks: tuple[Fallback, ...]) -> list[tuple[Fallback, Node]]:
        out = []
        for fb in fallbacks:
            pool = self.pool_of(fb)
            if pool is not None:
                out.append((fb, (fb.model, pool)))
        return out

    def cycle_from(self, node: Node) -> list[Node] | None:
        """A path that leads back to a (model, pool) already on it, from `node`; None when none does."""
        path: list[Node] = []

        def walk(here: Node) -> list[Node] | None:
            if here in path:
                return [*path[path.index(here):], here]
            path.append(here)
            for _, nxt in self.edges(here):
                found = walk(nxt)
                if found:
                    return found
            path.pop()
            return None

        return walk(node)


def check_fallbacks(file: str, pools: list[tuple[str, tuple[str, ...], tuple[ModelSpec, ...]]],
                    routes: list[tuple[str, tuple[str, ...], tuple[Fallback, ...], list[Node]]]) -> None:
    """Refuse what cannot work: a fallback to a model no pool serves (or not the pool it names), a
    cycle, and a fallback a route's callers may not use (outside the route's `models`).

    `pools`: (name, public model names, mapping entries); `routes`: (name, `models` patterns,
    `fallbacks`, the (generation model, pool) pairs it reaches)."""
    graph = FallbackGraph(pools)
    for p, (pool, _names, pool_specs) in enumerate(pools):
        for m, spec in enumerate(pool_specs):
            where = f"pools[{p}].models[{m}].fallbacks"
            _check_targets(file, where, graph, spec.fallbacks)
            cycle = graph.cycle_from((spec.name, pool))
            if cycle:
                raise ConfigError(file, where, f"fallback cycle: {_path(cycle)}")
    for r, (_route, patterns, fallbacks, reached) in enumerate(routes):
        where = f"routes[{r}].fallbacks"
        _check_targets(file, where, graph, fallbacks)
        for _, node in graph.targets(fallbacks):
            cycle = graph.cycle_from(node)
            if cycle:
                raise ConfigError(file, where, f"fallback cycle: {_path(cycle)}")
        # Every model this route can end up sending to must be one its callers may ask for.
        starts = [n for _, n in graph.targets(fallbacks)] + [n for node in reached for _, n in graph.edges(node)]
        for model, _pool in _closure(graph, starts):
            if patterns and not any(fnmatchcase(model, pat) for pat in patterns):
                raise ConfigError(file, where if fallbacks else f"routes[{r}].models",
                                  f"a fallback leads to {model!r}, which this route's `models` "
                                  f"({', '.join(patterns)}) does not allow its callers")


def _check_targets(file: str, where: str, graph: FallbackGraph, fallbacks: tuple[Fallback, ...]) -> None:
    for i, fb in enumerate(fallbacks):
        if _wild(fb.model):
            raise ConfigError(file, f"{where}[{i}].model", "a fallback names one model, not a pattern")
        if fb.pool is not None and fb.pool not in graph.served:
            raise ConfigError(file, f"{where}[{i}].pool", f"no pool named {fb.pool!r}")
        if graph.pool_of(fb) is None:
            there = f"pool {fb.pool!r}" if fb.pool else "no pool"
            raise ConfigError(file, f"{where}[{i}].model", f"{there} serves {fb.model!r}" if fb.pool is None
                              else f"{there} does not serve {fb.model!r}")


def _path(cycle: list[Node]) -> str:
    return " -> ".join(f"{model} ({pool})" for model, pool in cycle)


def _closure(graph: FallbackGraph, starts: list[Node]) -> list[Node]:
    seen: dict[Node, None] = {}
    todo = list(starts)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen[node] = None
            todo.extend(n for _, n in graph.edges(node))
    return list(seen)
