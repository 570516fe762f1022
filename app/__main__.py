"""`python -m app` is the same as the `fedstream` command."""

from app.cli import main

main()
