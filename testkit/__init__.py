"""What the tests and the benchmarks share: real processes on loopback (`harness`: start, wait, stop;
a private `redis-server`), the fault-injecting fake backend (`fakes.backend`) and small media files.
Imports nothing of the project: it drives it from outside, as a user would."""
