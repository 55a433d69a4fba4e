"""The HTTP face of the registry: one module per resource of the distribution API."""
