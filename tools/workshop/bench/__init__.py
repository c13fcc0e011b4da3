"""make bench: each step's chat server against a raw WebSocket broadcast server."""
