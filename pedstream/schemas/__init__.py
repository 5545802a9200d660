"""Package data: the JSON Schemas of pedstream's outputs (``events.schema.json``)."""
