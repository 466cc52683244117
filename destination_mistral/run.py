"""Console entry point: `destination-mistral spec|check|write|load|search`."""

from __future__ import annotations

import sys


def run(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    if args and args[0] == "write":
        # The hot path: without the CDK's import (about a second) before the first record.
        from destination_mistral.sync.runner import run_write_command

        run_write_command(args[1:])
        return
    if args and args[0] == "load":
        # A local file's records through the same write path, also without the CDK's import.
        from destination_mistral.local_files.command import run_load_command

        run_load_command(args[1:])
        return
    if args and args[0] == "search":
        # A query against what a sync wrote: no Airbyte protocol, so no CDK before it is needed.
        from destination_mistral.search.command import run_search_command

        run_search_command(args[1:])
        return
    from destination_mistral.destination import DestinationMistral

    DestinationMistral().run(args)


if __name__ == "__main__":
    run()
