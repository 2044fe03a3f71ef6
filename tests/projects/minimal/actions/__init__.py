"""Custom actions of the minimal test project."""
