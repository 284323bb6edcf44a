"""Evaluation recipes: ``leaderboard.py`` (the paper's Table 1) and the ``evaluate`` metric module folder
``mv_description/``. ``leaderboard.py`` exposes ``make_parser()`` and ``main(args)``.
"""
