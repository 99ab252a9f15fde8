"""`edgegw loadtest`: LLM-aware load testing (TTFT, inter-token latency, tokens/s) with ramp-up, closed and
open loop, sweeps with knee detection, and JSON/HTML reports. Built on asyncio + aiohttp: see
docs/capacity.md for why not Locust."""
