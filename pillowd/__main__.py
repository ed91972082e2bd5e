"""Lets ``python -m pillowd`` behave like the ``pillowd`` command."""
import sys

from .cli import main

sys.exit(main())
