"""`python -m authserver.cli.entry` runs the CLI (used to start child processes)."""

from . import main

if __name__ == "__main__":
    main()
