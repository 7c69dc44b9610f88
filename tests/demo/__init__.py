"""Tests of the demo services: the mock brokerage API and the mock calendar provider."""
