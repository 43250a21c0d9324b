"""Tests of the masking of phone numbers and secrets (privacy/)."""
