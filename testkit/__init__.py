"""What the tests and the benchmarks share: real processes on loopback (`harness`: start, wait, stop;
a private `redis-server`; `gateways`: a gateway and fake backends configured per test; `policy_load`:
load while a policy changes), the fault-injecting fake backend (`fakes.backend`), small media files and
an OTLP receiver. It drives the gateway from outside, as a user would (it only mints tokens with it)."""
