"""`python -m authserver` runs the CLI."""

from .cli import main

main()
