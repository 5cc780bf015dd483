"""Allow ``python -m bulkschedule`` where the console script is not on PATH."""

from bulkschedule.cli import main

if __name__ == "__main__":
    main()
