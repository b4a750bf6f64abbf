"""The staged trainer, split by concern; ``remdinet.train`` is the public entry point."""
