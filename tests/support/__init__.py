"""Test helpers: app builders, factories and flow walkers."""
