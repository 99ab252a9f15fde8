"""docs/configuration.md is generated from the parsers' reads; these tests fail when code, example and docs drift.

How a new key is caught: a parser that reads `sec.int("new_key", 5)` records it whenever its
section is parsed, so the docs (a) and descriptions (b) checks fail until the key is described and
the docs regenerated. A key read only when present (behind `has()`, in a list item or an optional
section) is caught by the source scan (c) until the full example sets it, and (e) fails when the
example leaves any recorded key unset.
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import docgen
from gateway.cache.config import route_rule
from gateway.config import reader
from gateway.config.reader import Read
from gateway.docgen import ALLOWED, DEFAULTS, DESCRIPTIONS, NOTES, TYPES
from gateway.features import PARTS, load_config
from gateway.plugins.config import plugin_settings
from gateway.ratelimit.config import route_limits
from gateway.redis.config import redis_config
from gateway.upstream.config import pool_options
from testkit.harness import ROOT

# Every module that reads policy keys, by module name (as the recorder names the caller): the
# frame's loader and the module of each feature's parsers.
PARSERS = {module: module.replace(".", "/") + ".py" for module in dict.fromkeys(
    ["gateway.config.loader", *(fn.__module__ for part in PARTS for fn in (part.top, part.route, part.pool) if fn)])}
PARSERS["gateway.config.models"] = "gateway/config/models.py"  # the frame's `pools[].models` entries
GETTERS = {"str", "int", "float", "bool", "str_list", "raw", "section", "sections", "has"}


@pytest.fixture(scope="module")
def reads() -> list[Read]:
    return docgen.record()


@pytest.fixture(scope="module")
def keys(reads: list[Read]) -> dict[str, docgen.Key]:
    return docgen.merge(reads)


def test_committed_docs_are_generated(capsys: pytest.CaptureFixture[str]) -> None:
    """(a) Run `python -m gateway.docgen` after changing a parser, the example or a description."""
    code = docgen.main(["--check"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err


def test_check_reports_drift_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(docgen.OUTPUT.read_text().replace("| `port` | integer | `8080` |", "| `port` | integer | `80` |"))
    assert docgen.main(["--check", "--output", str(stale)]) == 1
    diff = capsys.readouterr().out
    assert "-| `port` | integer | `80` |" in diff and "+| `port` | integer | `8080` |" in diff


def test_every_key_is_described_and_every_description_is_a_key(keys: dict[str, docgen.Key]) -> None:
    """(b) No undocumented keys, and no stale documentation of keys nobody reads any more."""
    recorded = set(keys)
    assert sorted(recorded - set(DESCRIPTIONS)) == [], "describe these in the docs.py of the feature that reads them"
    assert sorted(set(DESCRIPTIONS) - recorded) == [], "stale descriptions: no parser reads these keys"
    for name, overrides in (("DEFAULTS", DEFAULTS), ("ALLOWED", ALLOWED), ("TYPES", TYPES)):
        assert sorted(set(overrides) - recorded) == [], f"stale entries in a part's KeyDocs ({name})"
    assert set(NOTES) <= set(docgen.TABLES)
    assert [t for t in docgen.TABLES if t and t.removesuffix("[]") not in recorded] == []


def test_every_key_a_parser_names_is_recorded(reads: list[Read]) -> None:
    """(c) A key read only when present must be set in the full example, or it goes undocumented."""
    recorded = {(r.module, _last_segment(r.path)) for r in reads}
    missing = []
    for module, file in PARSERS.items():
        for key in sorted(literal_keys((ROOT / file).read_text())):
            if (module, key) not in recorded:
                missing.append(f"{file}: {key!r}")
    assert missing == [], "set these keys in docs/examples/full-policy.yaml"


def test_source_scan_finds_literal_and_computed_key_names() -> None:
    # Guards the scan itself: a regression to "finds nothing" would make (c) pass vacuously.
    loader = literal_keys((ROOT / PARSERS["gateway.config.loader"]).read_text())
    assert {"host", "jwks_file", "public_key_file", "timeouts", "retries", "tenant"} <= loader
    assert {"dns", "rollout"} <= literal_keys((ROOT / PARSERS["gateway.upstream.config"]).read_text())
    assert {"cache", "memory_cache"} <= literal_keys((ROOT / PARSERS["gateway.cache.config"]).read_text())
    limits = literal_keys((ROOT / PARSERS["gateway.ratelimit.config"]).read_text())
    assert {"requests_per_minute", "concurrent", "tiers", "lease_s"} <= limits
    new = literal_keys("def f(sec):\n    if sec.has('shiny'):\n        return sec.int('shiny', 1)\n")
    assert new == {"shiny"}


def test_full_example_sets_every_key(keys: dict[str, docgen.Key]) -> None:
    """(e) The example is complete, so every value a reader could use is validated by a real parse."""
    assert [p for p, k in keys.items() if not k.present] == []


def test_full_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(d) The example is a valid policy (with the environment it documents)."""
    wasm = tmp_path / "auth.wasm"
    wasm.write_bytes(docgen.EMPTY_WASM)
    monkeypatch.setenv("EDGEGW_EXAMPLE_SECRET", "s" * 32)
    monkeypatch.setenv("EDGEGW_EXAMPLE_PLUGIN", str(wasm))
    monkeypatch.setenv("EDGEGW_EXAMPLE_UPSTREAM_KEY", "k" * 16)
    monkeypatch.setenv("EDGEGW_EXAMPLE_OTLP_HEADERS", "authorization=Bearer example")
    cfg = load_config(docgen.EXAMPLE)
    assert [p.name for p in cfg.pools] == ["cpu", "gpu"] and pool_options(cfg.pools[1]).dns is not None
    plugins = plugin_settings(cfg)
    assert redis_config(cfg) is not None and plugins is not None and plugins.plugin_dir
    plugin = plugins.plugins[0]
    assert plugin.file == str(wasm) and plugin.sha256 == hashlib.sha256(docgen.EMPTY_WASM).hexdigest()
    limit = route_limits(cfg.routes[0])[0]
    assert set(limit.tiers) == {"gold", "internal"} and limit.tiers["internal"] == ()
    assert route_rule(cfg.routes[1]) is not None


def test_recording_and_example_env_are_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEGW_EXAMPLE_SECRET", raising=False)
    monkeypatch.delenv("EDGEGW_EXAMPLE_PLUGIN", raising=False)
    assert docgen.record()
    assert reader._recorder is None  # off again after the block: normal parses pay nothing
    assert "EDGEGW_EXAMPLE_SECRET" not in os.environ and "EDGEGW_EXAMPLE_PLUGIN" not in os.environ


def test_shipped_policy_reads_are_a_subset_of_the_schema(monkeypatch: pytest.MonkeyPatch,
                                                         keys: dict[str, docgen.Key]) -> None:
    monkeypatch.setenv("EDGEGW_DEMO_SECRET", "x" * 40)
    with reader.recording(docgen.FREE_FORM_MAPS) as shipped:
        load_config(ROOT / "policies" / "gateway.yaml")
    assert {r.path for r in shipped} <= set(keys)


def _last_segment(path: str) -> str:
    return path.rsplit(".", 1)[-1].removesuffix("[]")


def literal_keys(source: str) -> set[str]:
    """Key names a parser module reads by literal: `sec.int("x")`, `helper(sec, "x")` where the helper
    passes that parameter to a getter, and `for k in ("x", ...)` / `for k in CONST` (a module-level
    tuple or dict of strings) where `k` is passed to a getter."""
    tree = ast.parse(source)
    consts = _module_constants(tree)
    wrappers = _wrappers(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            key = _getter_key(node)
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
            if isinstance(node.func, ast.Name) and node.func.id in wrappers:
                i = wrappers[node.func.id]
                if i < len(node.args) and isinstance(node.args[i], ast.Constant):
                    found.add(node.args[i].value)
        loops: list[tuple[ast.expr, ast.expr, ast.AST]] = []
        if isinstance(node, ast.For):
            loops.append((node.target, node.iter, node))
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            loops.extend((g.target, g.iter, node) for g in node.generators)
        for target, it, body in loops:
            names = set(_names(target))
            if names & _getter_args(body):
                found.update(_strings(it, consts))
    return found


def _getter_key(call: ast.Call) -> ast.expr | None:
    if isinstance(call.func, ast.Attribute) and call.func.attr in GETTERS and call.args:
        return call.args[0]
    return None


def _getter_args(node: ast.AST) -> set[str]:
    """Names passed as the key of a getter anywhere under `node`."""
    return {key.id for n in ast.walk(node) if isinstance(n, ast.Call)
            and isinstance(key := _getter_key(n), ast.Name)}


def _wrappers(tree: ast.Module) -> dict[str, int]:
    """Functions that pass one of their parameters as a getter's key: name -> that parameter's index."""
    out = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef):
            params = [a.arg for a in fn.args.args]
            for name in _getter_args(fn):
                if name in params:
                    out[fn.name] = params.index(name)
    return out


def _module_constants(tree: ast.Module) -> dict[str, list[str]]:
    out = {}
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
        value = getattr(stmt, "value", None)
        if isinstance(target, ast.Name) and value is not None:
            items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", [])
            strings = [k.value for k in items if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            if strings:
                out[target.id] = strings
    return out


def _strings(it: ast.expr, consts: dict[str, list[str]]) -> Iterator[str]:
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr in ("items", "keys"):
        it = it.func.value
    if isinstance(it, ast.Name):
        yield from consts.get(it.id, [])
    elif isinstance(it, ast.Tuple | ast.List):
        yield from (e.value for e in it.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))


def _names(target: ast.expr) -> Iterator[str]:
    for n in ast.walk(target):
        if isinstance(n, ast.Name):
            yield n.id
