"""TOPdesk: one authority's incidents; meldingen in, processing-status changes back."""
