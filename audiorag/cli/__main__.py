"""``python -m audiorag.cli`` is ``audiorag``."""

from . import main

main()
