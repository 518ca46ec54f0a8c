"""The blue/green deployment's tests, piece by piece."""
