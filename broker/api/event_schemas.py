"""What the OpenAPI document says the ways in take and answer (`broker.api.events`).

The request bodies are read by hand (strictly, as bytes), so FastAPI cannot derive
them; these schemas state them for clients, generators and schemathesis.
"""

from __future__ import annotations

from typing import Any

EVENTS_BODY: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/Event"},
        {
            "type": "object",
            "properties": {
                "events": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Event"},
                    "minItems": 1,
                    "maxItems": 1000,
                }
            },
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
}


CLOUD_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent 1.0 whose data is an Event",
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "pattern": r"^[\x21-\x7e]{1,128}$"},
        "source": {"type": "string", "pattern": r"^[\x21-\x7e]{1,128}$"},
        "type": {"type": "string", "minLength": 1},
        "time": {"type": "string", "format": "date-time"},
        "data": {"$ref": "#/components/schemas/Event"},
    },
    "required": ["specversion", "id", "source", "type", "data"],
}


_NAMED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "namespace": {"type": "string", "pattern": r"^[\x21-\x7e]{1,100}$"},
        "name": {"type": "string", "pattern": r"^[\x21-\x7e]{1,100}$"},
    },
    "required": ["namespace", "name"],
}
_PARTITION_KEY: dict[str, Any] = {"type": "string", "pattern": r"^[\x21-\x7e]{1,128}$"}
_OUTPUT: dict[str, Any] = {
    **_NAMED,
    "properties": {
        **_NAMED["properties"],
        "facets": {
            "type": "object",
            "description": "`partition` is the facet `openlineage.partition_facet` names "
            "(its default): a partition key, or an object with one as `key`",
            "properties": {
                "partition": {
                    "oneOf": [
                        _PARTITION_KEY,
                        {"type": "object", "properties": {"key": _PARTITION_KEY}},
                    ]
                }
            },
        },
        "outputFacets": {
            "type": "object",
            "properties": {
                "outputStatistics": {
                    "type": "object",
                    "properties": {"rowCount": {"type": "integer"}},
                }
            },
        },
    },
}
RUN_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "An OpenLineage RunEvent (spec 2-0-2); only what Baton reads is listed",
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "maxLength": 256},
        "run": {
            "type": "object",
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {
                    "type": "object",
                    "properties": {
                        "nominalTime": {
                            "type": "object",
                            "properties": {
                                "nominalStartTime": {"type": "string", "format": "date-time"}
                            },
                        }
                    },
                },
            },
            "required": ["runId"],
        },
        "job": _NAMED,
        "outputs": {"type": "array", "items": _OUTPUT, "maxItems": 100},
    },
    "required": ["eventType", "eventTime", "run", "job", "producer"],
}


_IDS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_CANNOT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "contract": {"type": ["string", "null"]},
        "reason": {"type": "string"},
        "kind": {"enum": ["no_reader", "bad_partition", "filtered", "not_listed"]},
    },
    "required": ["contract", "reason", "kind"],
}
ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "accepted": _IDS,
        "duplicates": _IDS,
        "routes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"event_id": {"type": "string"}, "feeds": _IDS,
                               "cannot": {"type": "array", "items": _CANNOT}},
                "required": ["event_id", "feeds", "cannot"],
            },
        },
    },
    "required": ["accepted", "duplicates", "routes"],
}  # fmt: skip
