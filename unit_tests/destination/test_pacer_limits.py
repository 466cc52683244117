"""The pacer alone, on a fake clock: both limits hold in every window, are learned from headers,
costs are calibrated by the server's count, and a refusal that says the budget is spent holds every
start until the reset."""

import random

import pytest

from destination_mistral.http.pacer import Pacer

TPM = 60_000


def tokens_headers(limit=TPM, remaining=None, **extra):
    headers = {"x-ratelimit-limit-tokens-minute": str(limit)}
    if remaining is not None:
        headers["x-ratelimit-remaining-tokens-minute"] = str(remaining)
    headers.update(extra)
    return headers


def run_requests(pacer, now, costs, route="POST /v1/embeddings"):
    """Starts each request at its reserved time (one at a time, answered at once): (start, cost)."""
    starts = []
    for cost in costs:
        wait, ticket = pacer.reserve(cost, route)
        now[0] += wait
        starts.append((now[0], ticket.charged or cost))
        pacer.settle(ticket, {})
    return starts


def most_in_any_window(starts, seconds=60.0):
    best = 0.0
    for i, (start, _) in enumerate(starts):
        best = max(best, sum(cost for when, cost in starts[i:] if when < start + seconds))
    return best


def test_tokens_started_in_any_sixty_seconds_never_exceed_the_minute_limit():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    rng = random.Random(3)
    starts = run_requests(pacer, now, [rng.randint(200, 16_000) for _ in range(400)])
    assert most_in_any_window(starts) <= TPM, (
        "a sixty-second window (sliding, so any fixed one too) carried more than the limit"
    )
    total = sum(cost for _, cost in starts)
    minutes = now[0] / 60.0
    # Requests of up to a quarter of the minute each cannot pack the minute exactly.
    assert total / minutes >= 0.85 * TPM, (
        f"the budget should be used, not wasted: {total / minutes:.0f} tokens/min of {TPM}"
    )


def test_a_sync_shorter_than_a_minute_gets_its_first_burst_and_the_full_rate():
    # Half a minute's worth of tokens: the bucket's burst at once, then the limit's own rate. The
    # burst is paid back only when it leaves the window, a minute later, which this sync never sees.
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    run_requests(pacer, now, [500] * 60)
    burst = pacer.token_capacity
    assert pacer.token_rate >= 0.98 * TPM / 60, "the refill is the limit's rate, less a small margin"
    assert now[0] == pytest.approx((60 * 500 - burst) / pacer.token_rate, abs=0.2)


def test_each_minute_carries_the_whole_limit_once_the_first_burst_is_paid_back():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    starts = run_requests(pacer, now, [500] * 400)  # over three minutes' worth
    assert most_in_any_window(starts) <= TPM
    gaps = [(a[0], b[0] - a[0]) for a, b in zip(starts, starts[1:], strict=False)]
    pauses = [when for when, gap in gaps if gap > 2 * 500 / (TPM / 60)]
    assert all(b - a > 55 for a, b in zip(pauses, pauses[1:], strict=False)), (
        f"at most one pause a minute (the burst's payback): {pauses}"
    )
    minutes = int(now[0] // 60)
    for minute in range(minutes):
        carried = sum(cost for when, cost in starts if minute * 60 <= when < (minute + 1) * 60)
        assert carried >= 0.97 * TPM, f"minute {minute} carried {carried} of {TPM}"


def test_the_token_limit_is_learned_from_the_headers_and_the_tighter_cap_wins():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    assert pacer.delay(50_000) == 0.0, "nothing known yet: no token pacing"
    pacer.on_success(tokens_headers(limit=120_000))
    assert pacer.tokens_per_minute == 120_000
    capped = Pacer(clock=lambda: now[0], cap_tpm=30_000)
    capped.on_success(tokens_headers(limit=120_000))
    assert capped.tokens_per_minute == 30_000, "the user's cap is kept below the account's limit"


def test_a_lower_remaining_count_from_the_server_lowers_the_budget():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success(tokens_headers(limit=TPM, remaining=0))
    wait = pacer.delay(3_000)
    assert wait > 0, "the server says nothing is left this minute: the next request must wait"
    assert wait == pytest.approx(3_000 / pacer.token_rate), "it waits for the refill of its own cost"


def test_requests_and_tokens_both_bind():
    now = [0.0]
    pacer = Pacer(2.0, clock=lambda: now[0], cap_tpm=TPM)
    cheap = run_requests(pacer, now, [10] * 20)
    gaps = [b[0] - a[0] for a, b in zip(cheap, cheap[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.5), "cheap requests are spaced by the request limit"
    costly = run_requests(pacer, now, [6_000] * 30)
    assert most_in_any_window(costly) <= TPM, "costly requests are held by the token limit"
    assert min(b[0] - a[0] for a, b in zip(costly[5:], costly[6:], strict=False)) > 0.5, (
        "once the bucket is empty, tokens, not requests, set the pace"
    )


def test_costs_are_calibrated_by_the_servers_count():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    wait, ticket = pacer.reserve(1_000, "POST /v1/chat/completions")
    pacer.settle(ticket, {"x-ratelimit-tokens-query-cost": "2000"})
    assert pacer.ratios["POST /v1/chat/completions"] == pytest.approx(2.0)
    _, next_ticket = pacer.reserve(1_000, "POST /v1/chat/completions")
    assert next_ticket.charged == pytest.approx(2_000), "later requests of the route are charged as the server counts"
    _, other = pacer.reserve(1_000, "POST /v1/embeddings")
    assert other.charged == pytest.approx(1_000), "each route has its own ratio"


def test_usage_calibrates_when_the_server_sends_no_cost_header():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    _, ticket = pacer.reserve(100, "POST /v1/chat/completions")
    pacer.settle(ticket, {}, {"prompt_tokens": 110, "completion_tokens": 40, "total_tokens": 150})
    assert pacer.ratios["POST /v1/chat/completions"] == pytest.approx(1.5), "the answer's tokens count too"


def test_a_refusal_that_says_the_minute_is_spent_holds_every_start_until_the_reset():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success(tokens_headers(limit=TPM, remaining=TPM))
    _, ticket = pacer.reserve(1_000)
    spent = pacer.on_throttled(42.0, tokens_headers(limit=TPM, remaining=0), ticket)
    assert spent, "remaining 0 says the token budget is spent"
    assert pacer.delay(10) >= 42.0, "no request starts before the window's reset"


def test_a_refusal_without_headers_holds_nobody_else():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    _, ticket = pacer.reserve(0)
    assert not pacer.on_throttled(5.0, {}, ticket)
    assert pacer.delay() == 0.0, "without word that a budget is spent, only the refused request waits"


def test_a_month_header_at_zero_marks_the_quota_spent_with_its_reset():
    pacer = Pacer()
    pacer.on_success(
        {"x-ratelimit-remaining-tokens-month": "0", "x-ratelimit-reset-tokens-month": "2026-01-01T00:00:00Z"}
    )
    assert pacer.month_spent and "2026-01-01" in pacer.month_spent


def test_a_long_retry_after_reveals_a_fixed_window_whose_budget_is_then_booked_whole():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success(tokens_headers(limit=TPM, remaining=TPM))
    _, ticket = pacer.reserve(1_000)
    # A smooth bucket would refill 1,000 tokens in a second; 40 s means the window ends in 40 s.
    assert pacer.on_throttled(40.0, tokens_headers(limit=TPM, remaining=0), ticket)
    waits = [pacer.delay(1_000) for _ in range(61)]
    at_reset = [w for w in waits if w == pytest.approx(40.0)]
    assert len(at_reset) >= 0.95 * TPM / 1_000, "the next window's budget (less a small margin) starts at its reset"
    assert waits[len(at_reset) :] == [pytest.approx(100.0)] * (61 - len(at_reset)), (
        "the rest waits for the window after"
    )


def test_a_retry_after_that_matches_the_refill_keeps_the_smooth_bucket():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.on_success(tokens_headers(limit=TPM, remaining=TPM))
    _, ticket = pacer.reserve(3_000)
    pacer.on_throttled(3.0, tokens_headers(limit=TPM, remaining=0), ticket)
    assert pacer.delay(6_000) < 40.0 and pacer.windows.end is None


def test_tokens_refunded_by_a_cheaper_answer_are_not_spent_before_they_refill():
    # Starts are booked ahead; an answer that cost less than charged gives tokens back at the booked
    # stamp. A request reserved now must not take them before the stamp: the server has not refilled
    # them yet, and would refuse it.
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], cap_tpm=TPM)
    tickets = [pacer.reserve(2_000, "r")[1] for _ in range(4)]  # the burst, then starts booked ahead
    assert tickets[-1].started > now[0]
    now[0] += 0.1
    pacer.settle(tickets[0], {"x-ratelimit-tokens-query-cost": "500"})  # 1,500 back
    wait, late = pacer.reserve(1_000, "r")
    # A smooth server with the same bucket, fed every start in time order at its real cost.
    starts = sorted([(t.started, 2_000) for t in tickets[1:]] + [(tickets[0].started, 500), (late.started, 1_000)])
    level, stamp = pacer.token_capacity, 0.0
    for when, cost in starts:
        level = min(pacer.token_capacity, level + (when - stamp) * TPM / 60)
        stamp = when
        assert level >= cost - 1e-6, f"the start at {when:.2f} s would be refused: {level:.0f} tokens left for {cost}"
        level -= cost
