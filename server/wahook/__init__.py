"""wahook: receive WhatsApp Cloud API webhooks, store them durably, serve typed events over gRPC."""

__version__ = "0.1.0"
