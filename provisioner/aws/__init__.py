"""Edges to AWS: boto3 clients, the S3 state store, EC2 fleet, ELBv2 router table."""
