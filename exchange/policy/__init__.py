"""Who may see and send what: partners, authentication, access decisions."""
