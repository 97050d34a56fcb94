"""Meldingen Hub: routes OSLO meldingen between Flemish local governments over Kafka."""

__version__ = "0.1.0"
