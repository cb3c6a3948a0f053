"""The HTTP API: ingestion, contracts, explain, triggers, health."""
