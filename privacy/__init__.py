"""Masking of citizens' phone numbers and of secrets in text and structured values
(:mod:`privacy.masking`).

A leaf: it imports nothing of the project (an import-linter contract), so the log processors
in :mod:`hotline.logs` and a slice that masks what it logs itself (the voicemail transcript in
:mod:`channels.voicemail`) share one set of patterns without an upward arrow.
"""
