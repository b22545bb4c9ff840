"""`python -m seqvae ...`: the command line (the same as the `seqvae` command)."""

import sys

from seqvae.cli import main

# guarded: an ensemble's training processes (`seqvae.ensemble`, spawned) import the main module
# of the process that started them, and must not run the command again
if __name__ == "__main__":
    sys.exit(main())
