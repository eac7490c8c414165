"""Analyse: decoded columns turned into mirror streams and sessions."""
