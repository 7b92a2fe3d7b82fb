"""The REST API (Lambda ``api_handler``): routes, parameter validation, signed page tokens."""
