"""Traffic scenarios: how requests reach the models measured (today: A/B against a commit)."""
