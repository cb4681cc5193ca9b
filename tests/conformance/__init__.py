"""Conformance of the model against real Linux: the emulated board and the host kernel."""
