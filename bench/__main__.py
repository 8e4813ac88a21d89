"""Entry point of ``python -m graphc.bench``."""
import sys

from .cli import main

sys.exit(main())
