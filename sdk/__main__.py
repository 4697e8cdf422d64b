"""``python -m salsdk``: the same as the ``salsdk`` command."""
import sys

from .cli import main

sys.exit(main())
