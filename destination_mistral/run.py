"""Console entry point: `destination-mistral spec|check|write`."""

from __future__ import annotations

import sys

from destination_mistral.destination import DestinationMistral


def run(args: list[str] | None = None) -> None:
    DestinationMistral().run(sys.argv[1:] if args is None else args)


if __name__ == "__main__":
    run()
