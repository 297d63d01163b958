"""``python -m aelab``."""
import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned helper process imports this module
    sys.exit(main())
