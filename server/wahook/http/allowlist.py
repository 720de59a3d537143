"""Multi-number safety: the phone number ids and WABA ids this sidecar is meant to serve.

One Meta app can send the webhooks of several numbers; pointed at the wrong sidecar,
they would be served to the wrong consumers without anyone noticing. With an allow-list
(WAHOOK_ALLOWED_PHONE_NUMBER_IDS, WAHOOK_ALLOWED_WABA_IDS) an event for a number not on
it is still stored (a 200 to Meta means durable; nothing is dropped) but marked
``misrouted``, counted in ``wahook_misrouted_events_total`` and logged at WARNING once
per number, so the mistake shows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from wahook.http.metrics import Metrics
from wahook.v1 import event_pb2

log = logging.getLogger("wahook.http")


class AllowList:
    """Marks the events of numbers not on the list (an empty list allows every id)."""

    def __init__(
        self, phone_number_ids: frozenset[str], waba_ids: frozenset[str], metrics: Metrics
    ) -> None:
        self.phone_number_ids = phone_number_ids
        self.waba_ids = waba_ids
        self._metrics = metrics
        self._logged: set[tuple[str, str]] = set()

    def mark(self, events: Sequence[event_pb2.Event]) -> None:
        for event in events:
            phone, waba = event.phone_number_id, event.waba_id
            if phone and self.phone_number_ids and phone not in self.phone_number_ids:
                self._misrouted(event, "phone number id", phone)
            elif waba and self.waba_ids and waba not in self.waba_ids:
                self._misrouted(event, "WABA id", waba)

    def _misrouted(self, event: event_pb2.Event, what: str, value: str) -> None:
        event.misrouted = True
        self._metrics.misrouted_events += 1
        if (what, value) not in self._logged:
            self._logged.add((what, value))
            log.warning(
                "event for %s %s, not on this sidecar's allow-list: stored, marked misrouted "
                "(is the webhook of another number pointed here?)",
                what,
                value,
            )
