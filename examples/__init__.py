"""Minimal apps the README quotes."""
