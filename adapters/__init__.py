"""Vendor adapters: one folder per vendor (client, translate, config; optional service).

See ``adapters/registry.py`` (discovery and configuration) and ``docs/adapters.md``.
"""
