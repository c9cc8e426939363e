"""`python -m clip2point` = the `clip2point` command."""
import sys

from .cli import main

sys.exit(main())
