"""The TOPdesk request/response contract the adapter is held to, as JSON Schema.

No official TOPdesk OpenAPI file is available here (``/shared/vendor-specs/topdesk/SOURCES.md``:
TOPdesk publishes ``incident_specification_<version>.yaml`` at developers.topdesk.com, not
reachable). These schemas are DERIVED from the facts gathered in ``/shared/design/vendors.md`` §3
(field names, ``briefDescription`` ≤ 80, ``externalNumber`` ≤ 60, the limited HTML of
``request``, ``{id|name}`` references, status enum) and from TOPdesk's own test data
(``example-incident-response.json``). They are strict on purpose (``additionalProperties:
false``): a field name the documentation does not list fails the contract tests and the test
stand-in server. Replace them with the official spec when it can be obtained.
"""

from __future__ import annotations

from typing import Any

ALLOWED_HTML_TAGS = ("i", "em", "b", "strong", "u", "br", "h5", "h6")

_REF: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "properties": {"id": {"type": "string", "minLength": 1}}, "required": ["id"], "additionalProperties": False},
        {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}, "required": ["name"], "additionalProperties": False},
    ]
}

_LIMITED_HTML = r"^(?:[^<]|<(?:/?(?:" + "|".join(ALLOWED_HTML_TAGS) + r")\s*/?)>)*$"

INCIDENT_CREATE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "TOPdesk POST /tas/api/incidents (derived)",
    "type": "object",
    "required": ["briefDescription", "request", "externalNumber"],
    "additionalProperties": False,
    "properties": {
        "callerLookup": {
            "oneOf": [
                {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": False},
                {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"], "additionalProperties": False},
            ]
        },
        "caller": {
            "type": "object",
            "required": ["dynamicName"],
            "additionalProperties": False,
            "properties": {
                "dynamicName": {"type": "string", "minLength": 1, "maxLength": 109},
                "email": {"type": "string", "maxLength": 100},
                "phoneNumber": {"type": "string", "maxLength": 25},
                "mobileNumber": {"type": "string", "maxLength": 25},
                "branch": _REF,
            },
        },
        "status": {"enum": ["firstLine", "secondLine", "partial"]},
        "briefDescription": {"type": "string", "minLength": 1, "maxLength": 80},
        "request": {"type": "string", "pattern": _LIMITED_HTML},
        "action": {"type": "string", "pattern": _LIMITED_HTML},
        "actionInvisibleForCaller": {"type": "boolean"},
        "externalNumber": {"type": "string", "minLength": 1, "maxLength": 60},
        "category": _REF,
        "subcategory": _REF,
        "callType": _REF,
        "entryType": _REF,
        "impact": _REF,
        "urgency": _REF,
        "priority": _REF,
        "operator": _REF,
        "operatorGroup": _REF,
        "processingStatus": _REF,
        "location": _REF,
        "branch": _REF,
        "object": _REF,
        "optionalFields1": {"type": "object"},
        "optionalFields2": {"type": "object"},
    },
}
"""The body the adapter POSTs to create an incident."""

_NAMED: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {"id": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]}},
}

INCIDENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "TOPdesk incident as returned by GET/POST /tas/api/incidents (derived; the fields the adapter reads)",
    "type": "object",
    "required": ["id", "number", "externalNumber", "processingStatus", "modificationDate", "closed", "completed"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "number": {"type": "string", "minLength": 1},
        "externalNumber": {"type": ["string", "null"], "maxLength": 60},
        "briefDescription": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "processingStatus": _NAMED,
        "closureCode": _NAMED,
        "completed": {"type": "boolean"},
        "closed": {"type": "boolean"},
        "creationDate": {"type": ["string", "null"]},
        "callDate": {"type": ["string", "null"]},
        "modificationDate": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)$"},
    },
}
"""An incident as the adapter reads it."""
