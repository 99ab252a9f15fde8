"""Client-side commands of the `edgegw` CLI, apart from the server: `demo` (and its stored secret),
`token`, `ask`, `loadtest`, and `policy` and `usage` (they ask a running gateway's admin API). No server package imports this one; `gateway.cli` registers them."""
