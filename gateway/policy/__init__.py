"""Policy versions at run time: hot reload, history and rollback (see docs/policy-reload.md).

`runtime.PolicyRuntime` owns the active version; `parts` builds a version's request-path objects,
reusing long-lived state from the previous one; `watch` notices file changes; `admin` serves
`/admin/policy`.
"""
