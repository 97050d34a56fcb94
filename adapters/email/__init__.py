"""E-mail authority adapter (SMTP out, signed status links in): see docs/adapters.md."""
