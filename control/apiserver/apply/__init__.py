"""Server-side apply (unfinished, not wired into the apiserver yet): field sets and their FieldsV1 encoding."""
