"""What operators run the server with: probes, metrics, request logs."""
