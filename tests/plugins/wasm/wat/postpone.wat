;; Pause contract plugin (proxy-wasm ABI 0.2.1, hand-written WAT), after the proxy-wasm Go SDK's
;; postpone-requests example: proxy_on_request_headers remembers its context id and returns Pause
;; with no http call pending; the next tick resumes it from the root context
;; (proxy_set_effective_context, then proxy_continue_stream). The host must hold the request until
;; then. With the root configuration "never" it never resumes: the host must give up within
;; limits.http_call_timeout_ms and fail the plugin (pause_timeout).
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $waiting (mut i32) (i32.const 0))
  (global $never (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; configuration "never" (5 bytes starting with 'n'): never resume
  (func (export "proxy_on_configure") (param $id i32) (param $size i32) (result i32)
    (if (i32.eq (local.get $size) (i32.const 5))
      (then
        ;; buffer type 7: plugin configuration; the host writes a pointer at 64 and the size at 68
        (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 5) (i32.const 64) (i32.const 68)))
          (then (global.set $never (i32.eq (i32.load8_u (i32.load (i32.const 64))) (i32.const 110)))))))
    (drop (call $set_tick (i32.const 1)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (global.set $waiting (local.get $id))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (i32.and (i32.ne (global.get $waiting) (i32.const 0)) (i32.eqz (global.get $never)))
      (then
        (if (i32.eqz (call $set_context (global.get $waiting)))
          (then (drop (call $continue (i32.const 0)))))
        (global.set $waiting (i32.const 0)))))
)
