"""Topic names and header names, defined once for every stage and adapter.

Consumers outside the hub (intercommunales, utilities) read these topics with any Kafka
client, so the names are part of the public contract: change them only with a new major
version.
"""

from __future__ import annotations

import re

INBOUND = "meldingen.inbound"
"""Every channel adapter produces new meldingen here (JSON-LD, key = melding id)."""

DEADLETTER = "meldingen.deadletter"
"""Whatever the hub cannot parse, validate or route: original bytes, reason in headers."""

DEADLETTER_ACTIONS = "meldingen.deadletter.actions"
"""Admin decisions on dead letters (replayed, discarded, with who/when/why); dead letters
themselves are never changed."""

KEYS = "meldingen.keys"
"""Compacted: per melding, the data key of its reporter's contact details, wrapped for the owner
and the hub. A tombstone erases the contact details for good (``meldhub gdpr erase``)."""

AUDIT = "meldingen.audit"
"""Who (admin or principal) read or changed what: replays, discards, reveals, erasures."""

STATUS = "meldingen.status"
"""Status changes reported by the owning authority's system."""

REFUSALS = "meldingen.refusals"
"""An owner's "not ours": the melding as the owner received it (value and headers unchanged) plus
``refused-by`` / ``refusal-reason`` / ``refused-at``. The hub routes it to the next candidate or to
:data:`TRIAGE` (:mod:`hub.refusal`). Written by authority adapters or an authority's own client."""

TRIAGE = "meldingen.triage"
"""Meldingen no candidate owner would take (every candidate refused, or too many hops): the
region's triage team reads them here, with the whole route history in the headers."""

AUTHORITY_PREFIX = "meldingen.authority."
STATUS_PREFIX = "meldingen.status."

_AUTHORITY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def authority_topic(authority_id: str) -> str:
    """The topic an authority (its adapter or its own Kafka client) reads its meldingen from."""
    if not _AUTHORITY_ID.match(authority_id):
        raise ValueError(f"invalid authority id {authority_id!r}: use lower-case letters, digits and '-'")
    return AUTHORITY_PREFIX + authority_id


def status_topic(source_id: str) -> str:
    """The topic the channel adapter ``source_id`` reads status changes for its citizens from."""
    if not _AUTHORITY_ID.match(source_id):
        raise ValueError(f"invalid source id {source_id!r}: use lower-case letters, digits and '-'")
    return STATUS_PREFIX + source_id


class Header:
    """Kafka header names. Values are UTF-8 bytes."""

    MELDING_ID = "melding-id"
    SOURCE = "source"  # the channel adapter that produced the melding (e.g. "open311-kortrijk")
    CONTENT_TYPE = "content-type"
    SCHEMA = "schema"  # the JSON-LD context / profile version of the value

    # set by the route stage
    AUTHORITY = "authority"
    RULE_ID = "route-rule"
    RULESET_VERSION = "route-ruleset-version"
    MUNICIPALITY_NIS = "municipality-nis"

    # set by the refusal flow (hub/refusal.py)
    REFUSED_BY = "refused-by"
    """Authority id of the owner that answered "not ours" (on ``meldingen.refusals``)."""
    REFUSAL_REASON = "refusal-reason"
    """Why it is not theirs, one line (e.g. "gewestweg: bevoegdheid AWV")."""
    REFUSED_AT = "refused-at"
    """ISO 8601 time of the refusal."""
    ROUTE_HISTORY = "route-history"
    """JSON list of earlier owners that refused, oldest first (:class:`hub.refusal.RouteHop`)."""
    TRIAGE_REASON = "triage-reason"
    """On ``meldingen.triage``: why no candidate owner was left (Dutch, one line)."""
    MELDING_KEY = "melding-key"
    """On a refusal of a melding with encrypted contact details: its key record from
    ``meldingen.keys`` (wrapped keys only), so the hub can re-encrypt for the next owner."""

    # set on dead letters
    ERROR_CLASS = "error-class"
    ERROR_REASON = "error-reason"
    ERROR_DETAILS = "error-details"  # JSON: SHACL violations or other structured context
    ORIGINAL_TOPIC = "original-topic"
    ORIGINAL_PARTITION = "original-partition"
    ORIGINAL_OFFSET = "original-offset"
    FIRST_SEEN = "first-seen"
    HUB_VERSION = "hub-version"

    # on status events (hub/status.py)
    STATUS_PREVIOUS = "status-previous"
    """Notation of the status the reporting adapter last knew (e.g. ``557``)."""
    REPORTED_BY = "reported-by"
    """The adapter id that reported the change (e.g. ``topdesk-kortrijk``)."""

    # set on a replayed message (a new message; the dead letter itself is never changed)
    REPLAYED_FROM = "replayed-from"  # "<topic>/<partition>/<offset>" of the dead letter
    REPLAYED_BY = "replayed-by"
    REPLAYED_AT = "replayed-at"


JSONLD_CONTENT_TYPE = "application/ld+json"
