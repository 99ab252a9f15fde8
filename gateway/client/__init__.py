"""Client-side commands of the `edgegw` CLI, apart from the server: `demo` (and its stored secret),
`token`, `ask` and `loadtest`. No server package imports this one; `gateway.cli` registers them."""
