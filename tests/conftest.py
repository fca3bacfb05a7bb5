"""Shared fixtures: real SQLite files in tmp dirs, real PostgreSQL when a URL is given."""
