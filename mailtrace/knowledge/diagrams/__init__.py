"""State diagrams drawn from the knowledge data (see mailtrace/diagrams.py); data only."""
