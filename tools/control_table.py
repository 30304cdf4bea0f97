"""Kept for old commands: ``python tools/control_table.py ARGS`` is ``etecrm controls ARGS``."""

import sys

from etecrm_lib.cli import main

if __name__ == "__main__":
    sys.exit(main(["controls", *sys.argv[1:]]))
