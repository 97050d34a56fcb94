"""The admin web console: dead letters (edit, re-validate, replay, discard), the audit log and
destination health, in Dutch, for civil servants. Run with ``meldhub dlq console``."""
