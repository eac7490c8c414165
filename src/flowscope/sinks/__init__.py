"""Sinks: decoded columns and analysis state turned into Arrow tables, text and files."""
