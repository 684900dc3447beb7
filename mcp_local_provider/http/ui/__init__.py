"""The web page at ``/ui``: routes (``routes.py``), its HTML (``render.py``) and usage chart
(``chart.py``), what it keeps (``state.py``), and its script and style sheet (``static/``,
shipped as package data)."""
