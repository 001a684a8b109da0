"""The TAXII 2.1 HTTP protocol layer: media types, parameters, endpoints, error mapping."""
