"""Open311 outbound: the hub files an authority's meldingen at its GeoReport v2 server (vendor ``open311-out``)."""
