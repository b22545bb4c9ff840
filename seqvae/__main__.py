"""`python -m seqvae ...`: the command line (the same as the `seqvae` command)."""

import sys

from seqvae.cli import main

sys.exit(main())
