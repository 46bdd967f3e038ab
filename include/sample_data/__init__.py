"""Bundled sample logs (``logs/``) and the seeded generator that wrote them (``generate.py``)."""
