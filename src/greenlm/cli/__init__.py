"""Command-line interface: one module per sub-command, no logic (see DESIGN.md)."""
