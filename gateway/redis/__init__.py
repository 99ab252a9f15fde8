"""The Redis wing: one connection per gateway worker, shared by the rate limiter and the response cache.

`link` (the client: lifecycle and calls), `breaker` (degraded mode), `outbox` (one write per event-loop
iteration, posted calls merged), `channel` (the pipelined connection), `script` (Lua scripts by SHA),
`wire` (RESP encoding), `settle` (the shared write script and its `SettleBatch`), `piggyback` (how the
limiter's calls carry the cache's work).
"""
