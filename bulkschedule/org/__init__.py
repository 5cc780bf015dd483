"""Knowing the org: the cached catalogue of courses, batches, modules, trainers and rooms, name to
ID resolution, the online checks, and the sessions Zoho already holds. Reads go through `zoho`."""
