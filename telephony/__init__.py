"""Telephony: the AMI link to Asterisk, typed AMI events, seat board, call tracker, queue
statistics and the PBX simulator. All AMI protocol code lives in this package; the rest of the
service sees the typed objects of :mod:`telephony.events` and :mod:`telephony.model`."""
