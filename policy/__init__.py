"""gantry's production checklist: pure rules (`policy.rules`) and the CrossGuard adapter (`policy/__main__.py`)."""
