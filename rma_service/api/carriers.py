"""Carrier tracking events (``POST /api/v1/carrier-events/{carrier}``): filled by the labels work."""
