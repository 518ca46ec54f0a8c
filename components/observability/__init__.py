"""The observability family: alarm specs (pure), the rollback and operations alarms, the notification topics, the
dashboard (pure body) and the budget.

It builds on the shared modules and settings only, so every other family can hand it metrics without a circle.
Security stance: each module's own (topics encrypted with a customer-managed KMS key).
"""
