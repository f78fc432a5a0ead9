"""Tests of autounet.preprocessing."""
