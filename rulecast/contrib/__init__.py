"""Integrations of rulecast with other frameworks; each module imports its own dependency."""
