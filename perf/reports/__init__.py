"""What a session reports: the markdown and JSON report, its plots and the summary table."""
