"""Training recipes: ``sft.py`` (two-stage SFT, run with ``accelerate launch train/sft.py``) and
``make_tiny.py`` (the tiny local models of the demo and the tests).

Each script exposes ``make_parser()`` and ``main(args)``, as TRL's scripts do, so the ``mv4all``
command and the tests import it as an ordinary module.
"""
