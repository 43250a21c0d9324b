"""Tests of the HTTP toolkit (httpkit/)."""
