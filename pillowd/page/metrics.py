"""Prometheus metrics, read from the pillow at scrape time."""

from __future__ import annotations

from typing import Callable

from ..history import OUTCOMES

# prometheus_client is imported on the first scrape, not at start: a pillow that is
# never scraped never pays for it (~40 ms of a start on this machine, more on a Pi).


class PillowCollector:
    """Reads counters the loops already keep; costs nothing between scrapes."""

    def __init__(self, pillow, consumer, renderer, clients: Callable[[], int],
                 mqtt: Callable[[], object] | None = None):
        self.pillow = pillow
        self.consumer = consumer
        self.renderer = renderer
        self.clients = clients
        # () -> pillowd.homeassistant.HomeAssistant or None: it is built after the page that
        # serves these metrics, since it needs the page's address.
        self.mqtt = mqtt or (lambda: None)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self.pillow
        messages = CounterMetricFamily("pillowd_messages", "Messages by outcome",
                                       labels=["outcome"])
        for outcome in OUTCOMES:
            messages.add_metric([outcome], p.counts.get(outcome, 0))
        yield messages
        yield CounterMetricFamily("pillowd_queue_requests",
                                  "Receive requests made to the queue",
                                  value=self.consumer.status.requests)
        yield CounterMetricFamily("pillowd_history_failures",
                                  "Failed writes of the history (a full or failing disk)",
                                  value=self.consumer.status.history_failures)
        yield GaugeMetricFamily("pillowd_queue_online", "1 while the queue answers",
                                value=int(self.consumer.status.online))
        yield GaugeMetricFamily("pillowd_poll_interval_seconds",
                                "Current wait between queue polls",
                                value=self.consumer.backoff.interval)
        r = self.renderer
        yield GaugeMetricFamily("pillowd_render_fps", "Frames rendered per second",
                                value=r.achieved_fps)
        yield GaugeMetricFamily("pillowd_render_frame_seconds",
                                "Time spent on the last frame", value=r.frame_seconds)
        yield CounterMetricFamily("pillowd_render_frames", "Frames rendered",
                                  value=r.frames)
        yield CounterMetricFamily("pillowd_render_dropped_frames",
                                  "Frames skipped because rendering fell behind",
                                  value=r.dropped)
        yield GaugeMetricFamily("pillowd_led_milliamps",
                                "Estimated current drawn by the LEDs", value=r.milliamps)
        yield GaugeMetricFamily("pillowd_web_clients", "Connected status page clients",
                                value=self.clients())
        outbox = p.extra.get("outbox")
        if outbox is not None:
            yield GaugeMetricFamily("pillowd_outbox_pending",
                                    "Hug events and receipts not yet taken by every "
                                    "partner's queue", value=outbox["pending"])
            away = GaugeMetricFamily("pillowd_outbox_away",
                                     "1 while a partner's queue refuses what is sent to it",
                                     labels=["queue"])
            for queue in outbox["partners"]:
                away.add_metric([queue], int(queue in outbox["away"]))
            yield away
            yield CounterMetricFamily("pillowd_outbox_sent",
                                      "Events a partner's queue took", value=outbox["sent"])
            yield CounterMetricFamily("pillowd_outbox_dropped",
                                      "Events dropped unsent, older than their ttl",
                                      value=outbox["dropped"])
        mqtt = self.mqtt()
        if mqtt is not None:
            yield GaugeMetricFamily("pillowd_mqtt_online",
                                    "1 while the MQTT broker is connected",
                                    value=int(mqtt.status["online"]))
            yield CounterMetricFamily("pillowd_mqtt_connects",
                                      "Successful connections to the MQTT broker",
                                      value=mqtt.connects)
            yield CounterMetricFamily("pillowd_mqtt_publishes",
                                      "Messages published to the MQTT broker",
                                      value=mqtt.publishes)
            yield CounterMetricFamily("pillowd_mqtt_commands_ignored",
                                      "Malformed or refused commands from MQTT",
                                      value=mqtt.ignored)


class Metrics:
    """The pillow's figures in Prometheus' text format, read at each scrape."""

    def __init__(self, pillow, consumer, renderer, clients: Callable[[], int],
                 mqtt: Callable[[], object] | None = None):
        self._collector = PillowCollector(pillow, consumer, renderer, clients, mqtt)
        self._registry = None

    def exposition(self) -> tuple[bytes, str]:
        """(the body, its content type) for GET /metrics."""
        from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry,
                                       generate_latest)
        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self._collector)
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
