"""Outgoing webhooks (Standard Webhooks): endpoints, the outbox written with each change, and its delivery."""
