"""Pydantic models of the providers' webhook payloads (the seed documents)."""
