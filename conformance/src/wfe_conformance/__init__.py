"""The wfe conformance suite."""
