"""The work of each command over the store: read it, run the core, write back. One module per concern."""
