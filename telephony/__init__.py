"""Telephony: the AMI link to Asterisk, typed AMI events, seat board, call tracker, queue
statistics, their records store and writer (:mod:`telephony.store`, :mod:`telephony.writer`)
and the PBX simulator. All AMI protocol code lives in this package; the rest of the
service sees the typed objects of :mod:`telephony.events` and :mod:`telephony.model`."""
