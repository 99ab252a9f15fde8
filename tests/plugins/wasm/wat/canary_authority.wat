;; `:authority` as a routing label (proxy-wasm ABI 0.2.1, hand-written WAT), after the Go SDK's
;; http-routing example: proxy_on_request_headers appends "-canary" to `:authority`, so a client Host
;; of `127.0.0.1:PORT` becomes `127.0.0.1:PORT-canary`: a valid header value, not a bare host[:port].
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ":authority")
  (data (i32.const 32) "-canary")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $len i32)
    ;; map 0: request headers; the host writes the value's pointer at 64 and its size at 68
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 68)))
      (then
        (local.set $len (i32.load (i32.const 68)))
        (memory.copy (i32.const 2048) (i32.load (i32.const 64)) (local.get $len))
        (memory.copy (i32.add (i32.const 2048) (local.get $len)) (i32.const 32) (i32.const 7))
        (drop (call $replace (i32.const 0) (i32.const 16) (i32.const 10) (i32.const 2048)
                    (i32.add (local.get $len) (i32.const 7))))))
    (i32.const 0))
)
