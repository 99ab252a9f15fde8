;; Memory-churn test plugin (proxy-wasm ABI 0.2.1, hand-written WAT): every instance grows its memory
;; to the cap and writes every byte of it in proxy_on_vm_start, so each live instance really holds
;; `limits.memory_mb` of resident memory. A request with an `x-abuse` header traps the instance.
;; tests/plugins/test_memory.py fails and swaps it hundreds of times and watches the gateway's RSS.
(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-abuse")
  (func (export "proxy_abi_version_0_2_1"))
  ;; bump allocator in the first page, reset per request (values the host hands over are small)
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    ;; grow 1 MiB at a time until the cap refuses, then dirty everything past the first page
    (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (memory.fill (i32.const 65536) (i32.const 0x5a)
                 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 65536)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 32) (i32.const 36)))
      (then unreachable))
    (i32.const 0))
)
