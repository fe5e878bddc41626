"""Command-line entry points. Commands only translate flags and call the library."""
