"""What a compiled module asks of the host and offers it: ABI version, imports, callback exports.

Used before a module may take traffic (and by `edgegw plugin check`): every import must resolve
and every ABI callback it exports must have the ABI's signature (calls are made unchecked)."""

from __future__ import annotations

from dataclasses import dataclass, field

import wasmtime

from wasm_plugins.abi import ABI_VERSIONS, CALLBACKS
from wasm_plugins.host_http import HTTP_IMPORTS
from wasm_plugins.host_misc import MISC_IMPORTS
from wasm_plugins.wasi import ENV_FUNCTIONS, WASI_IMPORTS, wasi_names

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")


# The host functions a plugin can import, from the explicit tables of the classes implementing them:
# import name -> the PluginInstance method. `env` imports that are proxy-wasm calls this host does
# not implement are stubbed (they answer UNIMPLEMENTED); WASI calls without a method are denied.
ENV_IMPORTS: dict[str, str] = {**HTTP_IMPORTS, **MISC_IMPORTS, **ENV_FUNCTIONS}
WASI_METHODS: dict[str, str] = WASI_IMPORTS
WASI_NAMES = wasi_names()


def classify_import(module: str, name: str, ty: object) -> str:
    """implemented | stubbed (answers UNIMPLEMENTED/an errno) | unresolved."""
    if not isinstance(ty, wasmtime.FuncType):
        return "unresolved"  # imported memories, tables, globals: this host provides none
    if module == "env":
        if name in ENV_IMPORTS:
            return "implemented"
        if name.startswith("proxy_") and len(ty.results) <= 1:
            return "stubbed"
    if module in WASI_MODULES and name in WASI_NAMES:
        return "implemented"
    return "unresolved"


@dataclass
class ModuleInfo:
    abi_version: str | None
    imports: list[tuple[str, str, str]]  # (module, name, implemented|stubbed|unresolved)
    exports: list[str]
    callbacks: set[str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect(module: wasmtime.Module) -> ModuleInfo:
    exports = {e.name: e.type for e in module.exports}
    abi = next((v for k, v in ABI_VERSIONS.items() if k in exports), None)
    imports = [(i.module, i.name or "", classify_import(i.module, i.name or "", i.type)) for i in module.imports]
    info = ModuleInfo(abi, imports, sorted(exports), set())
    if abi is None:
        info.problems.append("no proxy_abi_version_* export: not a proxy-wasm module "
                             f"(supported: {', '.join(ABI_VERSIONS.values())})")
    for mod, name, status in imports:
        if status == "unresolved":
            info.problems.append(f"unresolved import {mod}.{name}")
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        info.problems.append("the module does not export its memory as 'memory'")
    if "proxy_on_memory_allocate" not in exports and "malloc" not in exports:
        info.problems.append("the module exports neither proxy_on_memory_allocate nor malloc")
    for name, ty in exports.items():
        if name not in CALLBACKS:
            continue
        arities, returns = CALLBACKS[name]
        if not isinstance(ty, wasmtime.FuncType):
            info.problems.append(f"export {name} is not a function")
            continue
        params = [str(p) for p in ty.params]
        results = [str(r) for r in ty.results]
        if len(params) not in arities or any(p != "i32" for p in params) or results != (["i32"] if returns else []):
            want = f"({', '.join(['i32'] * arities[-1])}) -> {'i32' if returns else '()'}"
            info.problems.append(f"export {name} has type ({', '.join(params)}) -> {results or '()'}, "
                                 f"the ABI wants {want}")
            continue
        info.callbacks.add(name)
    return info
