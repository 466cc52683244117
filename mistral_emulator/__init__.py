"""A local, faithful Mistral API server: deterministic answers, seeded account data, and knobs for
latency, rate limits and faults."""

from .settings import EmulatorSettings
from .server import EmulatorProcess, EmulatorServer

__all__ = ["EmulatorServer", "EmulatorProcess", "EmulatorSettings"]
