"""The bootstrap project's tests (its own Pulumi program, bootstrap/)."""
