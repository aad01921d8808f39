"""Pytest fixtures around the Salesforce emulator (filled in with the emulator)."""
