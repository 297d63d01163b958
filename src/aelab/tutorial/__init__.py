"""The CNTK 105 tutorial, reproduced: its run and its report.

Owns ``run_tutorial`` (train the simple and deep models, print what the
tutorial prints, draw its figures) and the Markdown report. May import every
room below it; only the CLI and the public API import it.
"""
