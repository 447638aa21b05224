"""`python -m onnxfast`: run the shipped demo model; `python -m onnxfast run|info ...`: the CLI."""

import sys

from .cli import cmd_demo, main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else cmd_demo())
