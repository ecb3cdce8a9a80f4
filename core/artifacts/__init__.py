"""Model artifacts: weights references and the seeded recipe, the official checkpoint, the
export manifest and the locked artifact cache that backends build into."""
