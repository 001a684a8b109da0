"""Federation: pull from and push to other TAXII 2.1 servers (peers) under the sharing policy.
The only package that speaks to other servers, and the only one that imports taxii2-client."""
