"""Reading and checking a sheet: column spec, reader, cell parsing, schema, payloads. No network."""
