"""Signed webhooks (HMAC-SHA256, Stripe-style) to and from home-grown systems: see docs/adapters.md."""
