"""The shared SQL layer of wfe."""
