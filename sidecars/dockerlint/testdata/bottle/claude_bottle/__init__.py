"""Stub of the claude_bottle package, for building the sidecar image in tests."""
