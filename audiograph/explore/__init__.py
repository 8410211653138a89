"""What users do with a space besides search: a radio that walks it, and a 2-D map of it."""
