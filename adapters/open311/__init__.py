"""Open311 GeoReport v2 channel: apps and FixMyStreet submit meldingen and read their status back."""
