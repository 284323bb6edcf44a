"""The ``mv4all`` command: the composition root.

It is the only ``mv4all`` module that reaches into ``builders`` (and runs the ``train/``
and ``eval/`` recipes), and only inside command functions, so importing ``mv4all``
stays light and the dependency direction stays one-way.

One module per command group: ``dataset`` (sample, build), ``hub`` (push dataset/model),
``demo``, ``evaluate``, ``model`` (embed, describe); ``common`` holds the app, the console and
the one-line failure. Importing a command module registers its commands on ``app``.
"""

import sys

from mv4all.cli import dataset, demo, evaluate, hub, model, storyboard  # noqa: F401 - registers commands, help order
from mv4all.cli import shots as shots  # noqa: F401 - registers `shots` (after the others in help)
from mv4all.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``mv4all`` command: a mistake or a failure is one line on stderr, never a traceback.

    Commands turn the errors they expect into messages naming the file or option; this is the last
    resort for the rest. ``MV4ALL_DEBUG=1`` shows the traceback (for bug reports).
    """
    import os

    try:
        app()  # click itself answers usage errors (exit 2) and Ctrl-C
    except Exception as exc:  # noqa: BLE001 - the last resort described above
        if os.environ.get("MV4ALL_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {text} (MV4ALL_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
