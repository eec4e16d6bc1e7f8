"""Domain logic: framework-free, called by the API and the CLI."""
