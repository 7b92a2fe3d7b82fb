"""logarchive: a compliance-grade disaster archive of container logs in S3.

Everything the Lambda functions ship lives in this package (Chalice bundles only
``chalicelib/``); the host shipper and the CLI share the same modules.
"""

__version__ = "0.1.0"
