"""gantry's per-account bootstrap: GitHub OIDC delivery roles, their guard rails and the state backend."""
