"""dynoform: Heroku's workflow on plain EC2 hosts, or on the local cloud."""

__version__ = "0.1.0"
