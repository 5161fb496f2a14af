"""Storage: content hashes, the content-addressed cache, atomic writes, the report lock and publish."""
