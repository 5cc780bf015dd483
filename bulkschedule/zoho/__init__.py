"""Talking to Zoho: tokens, reply classification, session matching, the HTTP client. No pandas."""
