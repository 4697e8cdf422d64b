"""``python -m salsdk.convert``."""
import sys

from .cli import main

sys.exit(main())
