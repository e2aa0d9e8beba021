"""How work enters Gonets: validate, write the record, enqueue, return an id at once."""

from producers.sms import Producer, get_producer, poll_status, send_sms, status

__all__ = ["Producer", "get_producer", "poll_status", "send_sms", "status"]
