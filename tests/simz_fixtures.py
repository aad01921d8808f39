"""Pytest fixtures around the SimZ emulator (filled in with the emulator)."""
