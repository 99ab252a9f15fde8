;; Sandbox-abuse test plugin (proxy-wasm ABI 0.2.1, hand-written WAT): traps: `unreachable`, or unbounded recursion when x-abuse starts with 'r'
;; Misbehaves only when the request has an `x-abuse` header, so the same route also serves normal
;; requests; tests bind it and check the gateway stays healthy.
(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-abuse")
  (func (export "proxy_abi_version_0_2_1"))
  ;; bump allocator, reset per request (values the host hands over are small)
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; the first byte of the x-abuse header's value, or 0 when absent
  (func $abuse (result i32)
    (global.set $heap (i32.const 4096))
    (if (result i32) (i32.eqz (call $get_header (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 32) (i32.const 36)))
      (then (i32.load8_u (i32.load (i32.const 32))))
      (else (i32.const 0))))
  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $abuse) (then (if (i32.eq (call $abuse) (i32.const 114)) (then (drop (call $recurse (i32.const 0))))) unreachable))
    (i32.const 0))
)
