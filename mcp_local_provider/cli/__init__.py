"""The command line: one module per command (see ``main.py``)."""
