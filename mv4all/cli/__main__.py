"""``python -m mv4all.cli``: the ``mv4all`` command."""

import sys

from mv4all.cli import main

sys.exit(main())
