"""The bottom layer: errors, problems, outcomes, the request, constants. Standard library only."""
