"""The stream processor's instruments (Prometheus on ``/metrics``)."""

from __future__ import annotations

from strata.shared.serving.metrics import Histogram, Instruments

# event ts -> store write, seconds: tens of ms when keeping up, minutes when replaying a backlog
FRESHNESS_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ProcessorMetrics:
    def __init__(self) -> None:
        m = self.instruments = Instruments("strata_processor")
        m.define("events_applied_total", "events whose effects were written")
        m.define("duplicates_skipped_total", "events skipped: event id already applied", ("reason",))
        m.define("dead_lettered_total", "records that failed validation, sent to the dead-letter topic")
        m.define("batches_total", "batches written")
        m.define("write_conflicts_total", "batches recomputed: another owner wrote the partition meanwhile")
        m.define("store_errors_total", "batch reads/writes that failed on a store or broker error (retriable ones "
                 "are retried; others isolate the record causing them)")
        m.define("poison_records_total", "records the store refused the same way twice alone, sent to the dead-letter topic")
        m.define("log_resets_total", "resets of the events log detected (topic id changed, an unknown event id at "
                 "or below a watermark, or a watermark past the log's end)", ("how",))
        m.define("log_reset_degraded", "1 while a detected log reset is recent (/readyz says degraded)")
        m.define("triggers_sent_total", "trigger messages published", ("type",))
        m.define("triggers_dead_lettered_total", "outbox entries that could not be a trigger: dead-lettered once")
        m.define("freshness_seconds", "event ts to store write")
        m.define("consumer_lag", "records behind the log end, per partition", ("partition",))
        m.define("impressions_rejected_total", "impressions and clicks not counted (auth on): impression id forged, "
                 "expired or replayed; dead-lettered", ("reason",))
        m.define("erased_events_dropped_total", "events of an erased user older than its erasure, dropped")
        for reason in ("forged", "expired", "replayed"):
            m.inc("impressions_rejected_total", (reason,), by=0)
        m.inc("erased_events_dropped_total", by=0)
        for how in ("topic_id", "event_id", "offsets"):          # exported at 0 from the start: alerts need the series
            m.inc("log_resets_total", (how,), by=0)
        m.inc("poison_records_total", by=0)
        self.freshness = Histogram(FRESHNESS_BUCKETS_S)
        m.histograms[("freshness_seconds", ())] = self.freshness
        self.applied = 0
        self.duplicates = 0
        self.replayed = 0
        self.dead = 0

    def screened(self, rejected: dict[str, int], erased: int) -> None:
        for reason, n in rejected.items():
            self.instruments.inc("impressions_rejected_total", (reason,), by=n)
        if erased:
            self.instruments.inc("erased_events_dropped_total", by=erased)

    def batch(self, applied: int, duplicates: int, replayed: int, dead: int) -> None:
        m = self.instruments
        self.applied += applied
        self.duplicates += duplicates
        self.replayed += replayed
        self.dead += dead
        m.inc("batches_total")
        m.inc("events_applied_total", by=applied)
        m.inc("duplicates_skipped_total", ("event_id",), by=duplicates)
        m.inc("duplicates_skipped_total", ("offset",), by=replayed)
        m.inc("dead_lettered_total", by=dead)
