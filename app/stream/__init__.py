"""Faust adapter: the stream worker (thin agents over app.features)."""
