"""Tests of autounet.fingerprint."""
