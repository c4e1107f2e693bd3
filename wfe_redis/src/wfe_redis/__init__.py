"""Redis lock, queue and lifecycle publisher for wfe."""
