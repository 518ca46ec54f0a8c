"""The policy pack's tests: the pure rules, and the pack through the real servicer."""
