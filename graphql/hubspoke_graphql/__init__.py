"""GraphQL API over the lake, generated from the contracts."""
