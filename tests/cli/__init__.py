"""Tests of the ``smtp-rtls`` command line."""
