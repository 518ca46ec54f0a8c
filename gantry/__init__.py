"""gantry's commands, run as `python -m gantry.<command>` from the repository root."""
