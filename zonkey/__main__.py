import sys

from zonkey.cli import run

sys.exit(run())
