"""sierradb.client: the Python client (to come; any Redis client works today)."""
