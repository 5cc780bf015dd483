"""The upload page: routes, access control, uploads, the live run, pages."""
