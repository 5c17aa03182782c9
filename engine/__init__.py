"""The funnel engine: the only package that imports SpiffWorkflow; every state change goes through it."""
