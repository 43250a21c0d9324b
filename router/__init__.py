"""Routing of intakes to units, with deadlines, into the ticket backend."""
