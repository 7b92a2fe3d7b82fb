"""Deployment and customer-bucket setup: bucket policy, replication, checks, IAM and templates."""
