"""The command line: flags to typed settings to library calls, and rendering for the terminal.

`main` is the ``bulkschedule`` entry point (pyproject ``[project.scripts]``); each command is a
module here, loaded when it runs (see `root`).
"""

from bulkschedule.cli.root import main

__all__ = ["main"]
