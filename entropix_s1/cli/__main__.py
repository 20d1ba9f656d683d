"""`python -m entropix_s1.cli ...` is `entropix-s1 ...`."""

import sys

from entropix_s1.cli.main import main

sys.exit(main())
