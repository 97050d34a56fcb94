"""Vendor adapters: one folder per ticketing package (client, translation, config)."""
