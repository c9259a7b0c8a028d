"""Evaluate a policy before switching to it (see command.py)."""
