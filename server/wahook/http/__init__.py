"""The webhook front: Tornado handlers (app, handlers), Prometheus metrics."""
