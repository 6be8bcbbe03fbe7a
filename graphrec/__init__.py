"""Command line entry point of the project."""
