"""A local, faithful Mistral API server: deterministic answers, seeded account data, and knobs for
latency, rate limits and faults."""

from .server import EmulatorProcess, EmulatorServer
from .settings import EmulatorSettings

__all__ = ["EmulatorServer", "EmulatorProcess", "EmulatorSettings"]
