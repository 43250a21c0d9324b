"""Tests of the hotline service package."""
