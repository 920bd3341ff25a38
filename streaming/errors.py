"""Errors of tier 2, rooted in ``shared.errors.StrataError`` so ``shared.serving.error_mapper`` answers them."""

from __future__ import annotations

from strata.shared.errors import InvalidField, ServiceUnavailable


class BrokerUnavailable(ServiceUnavailable):
    """The event log did not acknowledge in time: nothing of the request is claimed accepted."""

    code = "broker_unavailable"
    retry_after_s = 2.0


class EventsRejected(InvalidField):
    """Every event of a batch was invalid: 422, with the per-index reasons of the 202 answer."""

    code = "events_rejected"

    def __init__(self, rejected: list[dict]) -> None:
        first = rejected[0]
        super().__init__(f"all {len(rejected)} event(s) rejected; first: {first['reason']}",
                         field=f"events[{first['index']}].{first['field']}")
        self.rejected = rejected

    def to_dict(self) -> dict:
        return {**super().to_dict(), "accepted": 0, "rejected": self.rejected}
