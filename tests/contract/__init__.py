"""Contract checks that run the service for real (see schemathesis_run.py)."""
