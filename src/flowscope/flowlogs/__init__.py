"""Flow logs: cloud per-interval connection summaries (AWS VPC Flow Logs first)."""
