"""The AfterAllowTestTraffic hook function: its handler and packaged data. See handler.py."""
