"""What a measurement runs on: cases, providers, sessions, sampling, contention and the machine."""
