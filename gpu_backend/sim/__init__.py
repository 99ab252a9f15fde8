"""A simulated OpenAI-compatible model server for scale: many replicas in one process, with a prefix
cache, a FCFS queue and batch-dependent decode (`gpu_backend.sim.model` describes the model)."""

from gpu_backend.sim.model import Replica, SimConfig, prompt_blocks
from gpu_backend.sim.server import SimServer, serve

__all__ = ["Replica", "SimConfig", "SimServer", "prompt_blocks", "serve"]
