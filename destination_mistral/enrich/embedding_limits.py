"""How large a batch of inputs may be (embeddings, and the moderation and classification routes,
which take the same `input: [...]` and are held to the same limits): the server's per-request limits
with a margin (blind, or calibrated by the `usage` answers report), the caps refusals taught, and a
share of the account's tokens per minute."""

from __future__ import annotations

from destination_mistral.enrich import batching
from destination_mistral.enrich.batching import lower_input_cap, tokens_max_and_count
from destination_mistral.enrich.embedding_input import EmbeddingInput
from destination_mistral.http.client import MistralClient

ROUTE = "POST /v1/embeddings"


class BatchLimits:
    def __init__(self, client: MistralClient | None, route: str = ROUTE) -> None:
        self.client = client
        # The route whose cost ratio (server tokens per token of ours) the pacer keeps.
        self.route = route
        # Server tokens per token of ours, the highest seen in `usage`: once known, batches fill to
        # just under the server's limit instead of keeping the blind margin.
        self.token_ratio: float | None = None
        # Caps a refusal taught ("too many inputs", "too many tokens"): they hold for the rest of the
        # sync, so that each kind of refusal happens once, not on every full batch.
        self.input_cap = batching.MAX_INPUTS_PER_REQUEST
        self.token_ceiling = batching.MAX_TOKENS_PER_REQUEST

    def budget(self) -> int:
        """Tokens per batch (our count): the server's per-request limit with its margin (blind, or
        calibrated by `usage`), what a refusal taught, and a share of the account's tokens per minute,
        so that on a small account one batch is not most of a minute's budget (the pacer's bucket must
        hold the largest request, and what it holds is taken from the rate)."""
        if self.token_ratio is None:
            budget = int(batching.MAX_TOKENS_PER_REQUEST * batching.TOKEN_MARGIN)
        else:
            budget = min(
                int(batching.MAX_TOKENS_PER_REQUEST * batching.CALIBRATED_MARGIN / max(self.token_ratio, 0.5)),
                batching.MAX_TOKENS_PER_REQUEST,
            )
        budget = min(budget, self.token_ceiling)
        # Only Mistral's client paces by the account's rate; without one (a config check, a stand-in
        # for the API) there is no minute's budget to take a share of.
        pacer = self.client.pacer if isinstance(self.client, MistralClient) else None
        per_minute = pacer.tokens_per_minute if pacer is not None else None
        if per_minute:
            ratio = pacer.ratios.get(self.route, 1.0)
            budget = min(budget, int(per_minute * batching.TPM_SHARE_PER_BATCH / max(ratio, 0.1)))
        return max(1, budget)

    def fits(self, items: list[EmbeddingInput]) -> bool:
        """Whether a batch already formed may be sent as it is: within what the server is known to
        accept (its per-request limit by the calibrated count, and what a refusal taught). The margin
        and the share of the minute that size new batches are not applied again: a calibration a
        little above the blind margin would split every batch waiting for its turn into a full one
        and a sliver, two requests for one under a requests-per-second limit."""
        if len(items) <= 1:
            return True
        tokens = sum(i.tokens for i in items)
        return (
            len(items) <= self.input_cap
            and tokens <= self.token_ceiling
            and tokens * (self.token_ratio or 1.0) <= batching.MAX_TOKENS_PER_REQUEST
        )

    def lower_input_cap(self, refused: int) -> None:
        """After `refused` inputs were refused as too many."""
        self.input_cap = min(self.input_cap, lower_input_cap(refused))

    def lower_token_ceiling(self, message: str, ours: int) -> None:
        """After a batch of `ours` tokens (our count) was refused as too many tokens."""
        stated = tokens_max_and_count(message)
        if stated is not None:
            limit, counted = stated
            # The server says both its limit and its count: the ratio of its count to ours tells how
            # many of our tokens fit.
            ratio = max(counted / ours, 0.5)
            self.token_ratio = max(self.token_ratio or 0.0, ratio)
            ceiling = int(limit * batching.CALIBRATED_MARGIN / ratio)
        else:
            # "Too many tokens overall": the server counts more than we thought, by how much unknown;
            # a quarter less covers a count a third above ours.
            ceiling = int(ours * 0.75)
        self.token_ceiling = max(1, min(self.token_ceiling, ceiling))

    def calibrate(self, ratio: float) -> bool:
        """Takes the ratio of the server's count to ours from an answer; whether the budget changed."""
        if self.token_ratio is not None and ratio <= self.token_ratio:
            return False
        self.token_ratio = ratio
        return True
