"""Signalen (Amsterdam/signals) authority adapter: see docs/adapters.md."""
