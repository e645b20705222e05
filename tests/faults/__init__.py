"""Fault-injection helpers: a cuttable TCP proxy, a real `taina serve` subprocess, slow engines."""
