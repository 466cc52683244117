"""Injected faults must be reproducible from the seed and honour the route filter."""

from mistral_emulator.faults import FaultInjector
from mistral_emulator.settings import EmulatorSettings


def _sequence(seed, settings, n=200, route="/v1/embeddings"):
    inj = FaultInjector(seed)
    return [inj.draw(settings, "POST", route) for _ in range(n)]


def test_same_seed_gives_the_same_fault_sequence():
    s = EmulatorSettings(fault_429=0.1, fault_500=0.1, fault_drop=0.05, fault_truncate=0.05)
    assert _sequence(1, s) == _sequence(1, s)
    assert _sequence(1, s) != _sequence(2, s)


def test_rates_are_roughly_respected():
    s = EmulatorSettings(fault_429=0.2, fault_500=0.1)
    seq = _sequence(3, s, n=5000)
    assert 850 < seq.count("429") < 1150, "429 rate should be near 20%"
    assert 350 < sum(seq.count(c) for c in ("500", "502", "503")) < 650


def test_routes_outside_the_filter_never_fault():
    s = EmulatorSettings(fault_500=1.0, fault_routes=["POST /v1/chat/completions"])
    assert set(_sequence(0, s, route="/v1/embeddings")) == {None}
    assert set(_sequence(0, s, route="/v1/chat/completions")) <= {"500", "502", "503"}


def test_runtime_update_rejects_unknown_knobs_and_impossible_rates():
    s = EmulatorSettings()
    for bad in ({"fault_429": 0.7, "fault_500": 0.6}, {"files": 3}, {"fault_drop": 2}):
        try:
            s.update(**bad)
        except ValueError:
            continue
        raise AssertionError(f"update({bad}) should have been refused")
