"""``python -m export``: see :mod:`export.cli`."""
from .cli import main

main()
