"""Citizen channels (web form, mobile app, mayor's mailbox, phone) and the one intake stream."""
