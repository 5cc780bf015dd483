"""The command line: flags to typed settings to library calls, and rendering for the terminal."""

from bulkschedule.cli.root import main

__all__ = ["main"]
