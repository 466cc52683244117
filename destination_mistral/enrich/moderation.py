"""Moderation (/v1/moderations, or /v1/chat/moderations for a conversation): each record's score per
category. The scores are what is paid for and cached; which categories are flagged is decided from
them when the row is written (ModerationSettings.flagged_categories), so a new threshold needs no new
request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from destination_mistral.enrich.classifiers import ClassifierEnricher, scores_of
from destination_mistral.http.errors import InvalidAnswer
from destination_mistral.settings import ModerationSettings


class ModerationEnricher(ClassifierEnricher):
    settings: ModerationSettings

    def read_result(self, result: Any) -> dict[str, float]:
        """The category scores of one result (`category_scores`)."""
        if not isinstance(result, Mapping):
            raise InvalidAnswer("a moderation result that is not an object")
        return scores_of(result.get("category_scores"), "a moderation result")
