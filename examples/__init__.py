"""Runnable examples of wfe (see each module's docstring)."""
