"""Builders the tests (and the benchmarks in tools/) share; not part of any installed distribution."""
