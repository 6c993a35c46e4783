"""Routing policies: decide small+examples or large for each request."""
